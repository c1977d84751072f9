"""listed_search (migration 0012) is what a several-word search reads on PostgreSQL
(services/catalog/search_pg.one_pass): after every lifecycle change it must hold exactly one row per
listed product with that product's current order, facet and vector columns (the pages, totals and
facets it gives are compared with the general path in test_search_one_pass.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.catalog.conftest import Tokens, create, create_listed, spec
from tests.catalog.test_search import FREE, sub
from tests.support import RunningApp

COLUMNS = ("pk, listed_at, category, grade, has_free, has_one_time, has_subscription, has_metered, "
           "search_vector::text, title_vector::text")
TABLE = text(f"SELECT {COLUMNS} FROM listed_search ORDER BY pk")
DIRECT = text(f"SELECT {COLUMNS} FROM products WHERE status = 'listed' ORDER BY pk")


async def assert_table_matches_products(svc: RunningApp, rows: int | None = None) -> None:
    async with svc.db.sessionmaker() as session:
        table = (await session.execute(TABLE)).all()
        assert table == (await session.execute(DIRECT)).all()
    if rows is not None:
        assert len(table) == rows  # not vacuous


async def test_listed_search_follows_the_listed_products(catalog: RunningApp, tokens: Tokens, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("listed_search is kept on PostgreSQL only (SQLite searches read products)")
    a = (await create_listed(catalog, tokens.provider_a, spec(plans=[FREE], tags=["air", "weather"])))["id"]
    b = (await create_listed(catalog, tokens.provider_b, spec(slug="meters", category="energy", tags=["air"],
                                                              plans=[sub(900, "USD")])))["id"]
    await create(catalog, tokens.provider_a, spec(slug="never-listed", tags=["air"]))
    await assert_table_matches_products(catalog, rows=2)
    steps = [
        ("post", f"/v1/products/{a}/suspend", tokens.regulator, {"reason": "Under investigation."}, 1),
        ("post", f"/v1/products/{a}/reinstate", tokens.regulator, {"reason": "Cleared."}, 2),
        ("put", f"/v1/products/{a}", tokens.provider_a, spec(
            title="Smart meter readings", description="Quarter-hourly.", category="energy",
            grade="L2_internal", tags=["smart", "Air quality"], plans=[sub(500)]), 2),
        ("post", f"/v1/products/{a}/submit", tokens.provider_a, None, 2),  # version 2: new words and facets
        ("post", f"/v1/products/{a}/retire", tokens.provider_a, {}, 1),
    ]
    for method, path, headers, body, rows in steps:
        resp = await catalog.client.request(method, path, headers=headers, json=body)
        assert resp.status_code == 200, (path, resp.text)
        await assert_table_matches_products(catalog, rows=rows)
    async with catalog.db.sessionmaker() as session, session.begin():  # copied columns changed in place
        await session.execute(text("UPDATE products SET category = 'health', grade = 'L3_sensitive', "
                                   "has_metered = true, listed_at = listed_at - interval '1 day', "
                                   "title = 'Renamed ozone series' WHERE id = :id"), {"id": b})
    await assert_table_matches_products(catalog, rows=1)
    for change in ("description = 'Hourly nitrogen dioxide'", "tags_text = 'air pollen'"):  # one vector only
        async with catalog.db.sessionmaker() as session, session.begin():
            await session.execute(text(f"UPDATE products SET {change} WHERE id = :id"), {"id": b})
        await assert_table_matches_products(catalog, rows=1)
    async with catalog.db.sessionmaker() as session:
        assert "ozon" in (await session.execute(text("SELECT title_vector::text FROM listed_search"))).scalar_one()
    async with catalog.db.sessionmaker() as session, session.begin():
        await session.execute(text("DELETE FROM products WHERE id = :id"), {"id": b})
    await assert_table_matches_products(catalog, rows=0)
