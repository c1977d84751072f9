"""Each service's Alembic history upgrades to head and downgrades to base, on
SQLite and PostgreSQL, and the head schema matches the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from shared.migrations import downgrade, upgrade
from tests.support import PG_DB_PREFIX, SERVICES, migrations_dir, recreate_pg_database


def fresh_url(backend: str, service: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / f'{service}-migrations.db'}"
    return recreate_pg_database(f"{PG_DB_PREFIX}_migr_{service}")


async def table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def schema_drift(url: str, service: str) -> list[object]:
    import importlib

    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata))  # type: ignore[no-any-return]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_upgrade_head_downgrade_base_and_up_again(backend: str, service: str, tmp_path: Path) -> None:
    url = fresh_url(backend, service, tmp_path)
    upgrade(migrations_dir(service), url)
    tables = await table_names(url)
    assert "outbox" in tables and "alembic_version" in tables
    downgrade(migrations_dir(service), url)
    assert await table_names(url) <= {"alembic_version"}
    upgrade(migrations_dir(service), url)
    assert await table_names(url) == tables


@pytest.mark.parametrize("service", SERVICES)
async def test_migrated_schema_has_every_model_table(backend: str, service: str, tmp_path: Path) -> None:
    url = fresh_url(backend, service, tmp_path)
    upgrade(migrations_dir(service), url)
    drift = await schema_drift(url, service)
    missing_tables = [d for d in drift if isinstance(d, tuple) and d[0] == "add_table"]
    assert not missing_tables, f"models declare tables no migration creates: {missing_tables}"
