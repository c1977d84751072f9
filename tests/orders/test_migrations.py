"""The orders migrations upgrade to head and downgrade to base on both back ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from shared.migrations import downgrade, upgrade
from tests.support import PG_DB_PREFIX, POSTGRES_URL, migrations_dir, recreate_pg_database

TABLES = {"quotes", "orders", "payment_attempts", "stripe_events", "ledger_entries", "refunds", "outbox",
          "billing_customers", "subscriptions", "offers", "trials", "invoices", "payouts", "stripe_objects"}


async def tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return names - {"alembic_version"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'orders-migrations.db'}"
    if not POSTGRES_URL:
        pytest.skip("set SLUICE_TEST_POSTGRES_URL to run the PostgreSQL variant")
    return recreate_pg_database(f"{PG_DB_PREFIX}_orders_migrations")


async def test_upgrade_head_then_downgrade_base_then_upgrade_again(scratch_url: str) -> None:
    upgrade(migrations_dir("orders"), scratch_url)
    assert await tables(scratch_url) == TABLES
    downgrade(migrations_dir("orders"), scratch_url, "base")
    assert await tables(scratch_url) == set()
    upgrade(migrations_dir("orders"), scratch_url)
    assert await tables(scratch_url) == TABLES
