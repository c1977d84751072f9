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


async def test_a_work_mem_setting_reaches_every_connection_of_both_pools(database_url: DatabaseFactory,
                                                                          backend: str) -> None:
    """``db_work_mem`` (the catalog's default is 16MB) is a session setting of every PostgreSQL
    connection the service opens, the SQLAlchemy pool's and the hot asyncpg pool's; without it
    the server's own setting stays. SQLite has no such setting and ignores it."""
    if backend != "postgresql":
        Database(database_url("catalog"), work_mem="16MB")  # accepted, nothing to set
        return
    show = HotQuery(text("SELECT current_setting('work_mem') AS work_mem"))
    for work_mem, expected in (("16MB", "16MB"), ("", None)):
        db = Database(database_url("catalog"), work_mem=work_mem)
        try:
            async with db.engine.connect() as conn:
                via_engine = (await conn.execute(text("SHOW work_mem"))).scalar_one()
            via_hot = await show.one_or_none(db.hot, db.engine)
            assert via_hot is not None
            if expected is None:  # the server's own setting (4MB unless the operator changed it)
                assert via_engine == via_hot["work_mem"] != "16MB"
            else:
                assert via_engine == via_hot["work_mem"] == expected
        finally:
            await db.dispose()


def test_the_catalog_runs_its_searches_with_16mb_of_work_mem_and_rejects_a_malformed_value() -> None:
    from pydantic import ValidationError

    from services.catalog.settings import CatalogSettings

    assert CatalogSettings().db_work_mem == "16MB"
    assert CatalogSettings(db_work_mem="").db_work_mem == ""
    try:
        CatalogSettings(db_work_mem="16 megabytes")
    except ValidationError as exc:
        assert "db_work_mem" in str(exc)
    else:
        raise AssertionError("a malformed work_mem was accepted")
