"""shared/hot_reads.py: one-statement reads straight on asyncpg (PostgreSQL), SQLAlchemy elsewhere."""

from __future__ import annotations

from sqlalchemy import bindparam, select, text

from services.catalog.models import Product
from shared.db import Database
from shared.hot_reads import HotQuery
from tests.conftest import DatabaseFactory

_BY_ID = HotQuery(select(Product.__table__.c.id, Product.__table__.c.status)
                  .where(Product.__table__.c.id == bindparam("product_id")))


async def _insert_product(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO products (id, provider_org, slug, status, latest_version, title, summary, description, "
            "tags_text, category, grade, has_free, has_one_time, has_subscription, has_metered, created_at, "
            "updated_at) VALUES ('prd_hot', 'org_a', 'hot', 'listed', 1, 'Hot', '', '', '', 'energy', "
            "'L1_public', false, false, false, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))


async def test_a_hot_read_returns_the_row_or_none(database_url: DatabaseFactory) -> None:
    db = Database(database_url("catalog"))
    try:
        await _insert_product(db)
        assert await _BY_ID.one_or_none(db.hot, db.engine, product_id="prd_hot") == {
            "id": "prd_hot", "status": "listed"}
        assert await _BY_ID.one_or_none(db.hot, db.engine, product_id="prd_none") is None
    finally:
        await db.dispose()


async def test_a_hot_read_survives_its_connections_being_killed(database_url: DatabaseFactory,
                                                                backend: str) -> None:
    db = Database(database_url("catalog"))
    try:
        await _insert_product(db)
        assert await _BY_ID.one_or_none(db.hot, db.engine, product_id="prd_hot") is not None
        if backend == "postgresql":  # what a database restart does to pooled connections
            async with db.engine.connect() as conn:
                await conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        assert await _BY_ID.one_or_none(db.hot, db.engine, product_id="prd_hot") is not None
    finally:
        await db.dispose()
