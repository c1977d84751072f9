"""listed_product_tags (migration 0011) answers listed tag searches on PostgreSQL
(services/catalog/search_tags.py): after every lifecycle change it must hold exactly the tags of
the listed products with their current columns, and the price pages, cursors, totals and facets
it gives must be those of the general path."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from services.catalog import search, search_tags
from shared.auth import Principal
from shared.pagination import decode_cursor
from tests.catalog.conftest import Tokens, create, create_listed, spec
from tests.catalog.test_search import FREE, sub
from tests.support import RunningApp

BUYER = Principal("cli_buyer", "cli_buyer", "org_buyer", frozenset({"buyer"}), None, {})
COLUMNS = "pk, tag, currency, min_price, category, grade, has_free, has_one_time, has_subscription, has_metered"
TABLE = text(f"SELECT {COLUMNS} FROM listed_product_tags ORDER BY 1, 2")
DIRECT = text(f"SELECT {', '.join('t.tag' if c == 'tag' else f'p.{c}' for c in COLUMNS.split(', '))} "
              "FROM product_tags t JOIN products p ON p.pk = t.product_pk WHERE p.status = 'listed' ORDER BY 1, 2")


async def assert_table_matches_products(svc: RunningApp) -> None:
    async with svc.db.sessionmaker() as session:
        assert (await session.execute(TABLE)).all() == (await session.execute(DIRECT)).all()


async def test_listed_product_tags_follow_the_tags_and_columns_of_listed_products(
    catalog: RunningApp, tokens: Tokens, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("listed_product_tags is kept on PostgreSQL only (SQLite tag searches read products)")
    a = (await create_listed(catalog, tokens.provider_a, spec(plans=[FREE], tags=["air", "weather"])))["id"]
    b = (await create_listed(catalog, tokens.provider_b, spec(slug="meters", category="energy", tags=["air"],
                                                              plans=[sub(900, "USD")])))["id"]
    await create(catalog, tokens.provider_a, spec(slug="never-listed", tags=["air"]))
    await assert_table_matches_products(catalog)
    async with catalog.db.sessionmaker() as session:
        assert len((await session.execute(TABLE)).all()) == 3  # not vacuous
    steps = [
        ("post", f"/v1/products/{a}/suspend", tokens.regulator, {"reason": "Under investigation."}),
        ("post", f"/v1/products/{a}/reinstate", tokens.regulator, {"reason": "Cleared."}),
        ("put", f"/v1/products/{a}", tokens.provider_a, spec(category="energy", grade="L2_internal",
                                                            tags=["smart", "Air quality"], plans=[sub(500)])),
        ("post", f"/v1/products/{a}/submit", tokens.provider_a, None),  # version 2: new tags, price, facets
        ("post", f"/v1/products/{a}/retire", tokens.provider_a, {}),
    ]
    for method, path, headers, body in steps:
        resp = await catalog.client.request(method, path, headers=headers, json=body)
        assert resp.status_code == 200, (path, resp.text)
        await assert_table_matches_products(catalog)
    async with catalog.db.sessionmaker() as session, session.begin():  # copied columns changed in place
        await session.execute(text("UPDATE products SET min_price = 123, currency = 'GBP', category = 'health', "
                                   "grade = 'L3_sensitive', has_metered = true WHERE id = :id"), {"id": b})
    await assert_table_matches_products(catalog)
    async with catalog.db.sessionmaker() as session, session.begin():  # a tag row, then a product row deleted
        await session.execute(text("DELETE FROM product_tags WHERE tag = 'air' AND product_pk = "
                                   "(SELECT pk FROM products WHERE id = :id)"), {"id": b})
    await assert_table_matches_products(catalog)
    async with catalog.db.sessionmaker() as session, session.begin():
        await session.execute(text("INSERT INTO product_tags (product_pk, tag) "
                                   "SELECT pk, 'ozone' FROM products WHERE id = :id"), {"id": b})
    await assert_table_matches_products(catalog)
    async with catalog.db.sessionmaker() as session, session.begin():
        await session.execute(text("DELETE FROM products WHERE id = :id"), {"id": b})
    await assert_table_matches_products(catalog)


@pytest.fixture
async def tagged(catalog: RunningApp, tokens: Tokens) -> None:
    """Products tagged "air" (and one not) across prices (ties included), currencies, categories,
    grades and plan kinds, one of them suspended."""
    plans = [[FREE], [sub(500)], [sub(500)], [sub(900)], [sub(500, "USD")], [FREE, sub(300)], [sub(2000)],
             [sub(500)], [sub(100)]]
    ids = []
    for n, plan in enumerate(plans):
        ids.append((await create_listed(catalog, tokens.provider_a if n % 2 else tokens.provider_b, spec(
            slug=f"p{n}", tags=["air"] if n != 7 else ["water"], plans=plan,
            category="energy" if n % 3 else "environment", grade="L2_internal" if n % 2 else "L1_public")))["id"])
    resp = await catalog.client.post(f"/v1/products/{ids[3]}/suspend", headers=tokens.regulator,
                                     json={"reason": "Under investigation."})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("params", [
    {"tag": "air", "currency": "EUR", "max_price": 5000, "sort": "price"},
    {"tag": " Air", "currency": "EUR", "max_price": 500, "sort": "price", "grade": "L2_internal"},
    {"tag": "air", "currency": "EUR", "max_price": 0, "sort": "price"},
    {"tag": "air", "currency": "USD", "max_price": 10_000, "sort": "price"},
    {"tag": "air", "currency": "EUR", "max_price": 9_000, "sort": "price", "category": "energy",
     "plan_kind": "subscription"},
    {"tag": "air", "sort": "price"},  # no cap: the general page, facets from the table
    {"tag": "air", "plan_kind": "free"},
    {"tag": "air", "currency": "EUR"},
    {"tag": "nothing", "currency": "EUR", "max_price": 5000, "sort": "price"},
])
@pytest.mark.usefixtures("tagged")
async def test_tag_pages_cursors_totals_and_facets_are_the_general_ones(
    catalog: RunningApp, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any]
) -> None:
    used: list[str] = []
    monkeypatch.setattr(search_tags, "price_page", _spy(search_tags.price_page, "page", used))
    monkeypatch.setattr(search_tags, "facet_groups", _spy(search_tags.facet_groups, "facets", used))
    async with catalog.db.sessionmaker() as session:
        cursor: dict[str, Any] | None = None
        pages = 0
        while True:
            query = search.SearchQuery(**params, limit=2, cursor=cursor)
            fast = await search.search(session, BUYER, query)
            with monkeypatch.context() as patch:
                patch.setattr(search_tags, "filters", lambda query: None)
                general = await search.search(session, BUYER, query)
            assert fast == general, (pages, fast, general)
            pages += 1
            if fast.next_cursor is None:
                break
            cursor = decode_cursor(fast.next_cursor)
        if session.get_bind().dialect.name == "postgresql":
            assert "facets" in used
            assert ("page" in used) == ("max_price" in params), used
        else:
            assert not used
    if params == {"tag": "air", "currency": "EUR", "max_price": 5000, "sort": "price"}:
        assert pages == 3  # 6 matches (the suspended, untagged and USD ones left out), 2 a page


def _spy(fn: Any, name: str, used: list[str]) -> Any:
    def wrapped(*args: Any) -> Any:
        used.append(name)
        return fn(*args)
    return wrapped
