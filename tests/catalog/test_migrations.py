"""The catalog's migrations create and drop the full-text machinery on both back ends."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.migrations import downgrade, upgrade
from tests.support import PG_DB_PREFIX, migrations_dir, recreate_pg_database

SQLITE_OBJECTS = ("SELECT name FROM sqlite_master WHERE name LIKE '%product%' "
                  "ORDER BY name")
PG_OBJECTS = ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE n.nspname = 'public' AND c.relname LIKE '%product%' ORDER BY c.relname")


async def objects(url: str, backend: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return {r[0] for r in await conn.execute(text(SQLITE_OBJECTS if backend == "sqlite" else PG_OBJECTS))}
    finally:
        await engine.dispose()


async def test_upgrade_creates_search_index_and_downgrade_removes_everything(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}"
        search_objects = {"products_fts", "products_fts_ai", "products_fts_au", "products_fts_ad"}
    else:
        url = recreate_pg_database(f"{PG_DB_PREFIX}_catalog_migrations")
        search_objects = {"ix_products_search"}
    upgrade(migrations_dir("catalog"), url)
    created = await objects(url, backend)
    assert {"products", "product_versions", "product_tags"} <= created
    assert search_objects <= created
    downgrade(migrations_dir("catalog"), url)
    assert await objects(url, backend) == set()
    upgrade(migrations_dir("catalog"), url)
    assert await objects(url, backend) == created
