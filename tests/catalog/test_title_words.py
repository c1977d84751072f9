"""listed_title_words (migration 0010) gives one-word searches their tier-1 ranking window:
after every lifecycle change it must hold exactly the title/tag words of the listed products,
and its window must be the one the title index gives."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.catalog import search
from shared.auth import Principal
from tests.catalog.conftest import Tokens, create, create_listed, spec
from tests.catalog.test_search import FREE, sub
from tests.support import RunningApp

BUYER = Principal("cli_buyer", "cli_buyer", "org_buyer", frozenset({"buyer"}), None, {})
WORDS = ["weather", "rainfall", "stations", "meters", "energy", "grüße", "smart", "air", "nothing", "foo_bar"]
# listed_at as text: a listed product without one is stored as 'infinity', which a datetime cannot hold
TABLE = text("SELECT lexeme, listed_at::text, pk FROM listed_title_words ORDER BY 1, 2, 3")
DIRECT = text("SELECT l.lexeme, coalesce(p.listed_at, 'infinity')::text, p.pk FROM products p, "
              "unnest(tsvector_to_array(p.title_vector)) AS l(lexeme) WHERE p.status = 'listed' ORDER BY 1, 2, 3")


async def assert_title_words_match_products(svc: RunningApp) -> None:
    async with svc.db.sessionmaker() as session:
        assert (await session.execute(TABLE)).all() == (await session.execute(DIRECT)).all()
        for word in WORDS:
            plan = search._Plan("postgresql", BUYER, search.SearchQuery(q=word))
            assert plan.title_word == word
            c = search._products.c
            general = plan.select(c.pk, tier=1).order_by(c.listed_at.desc(), c.pk.desc()).limit(search.RANK_WINDOW)
            maintained = search.search_pg.title_word_window(word, search.RANK_WINDOW)
            got = list((await session.execute(maintained)).scalars())
            want = list((await session.execute(general)).scalars())
            # A word that is not one lexeme ("foo_bar") selects nothing here: search falls back.
            assert got == want or (not got and word == "foo_bar"), word


async def test_listed_title_words_follow_the_titles_and_tags_of_listed_products(
    catalog: RunningApp, tokens: Tokens, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("listed_title_words is kept on PostgreSQL only (SQLite matches with FTS5)")
    a = (await create_listed(catalog, tokens.provider_a, spec(plans=[FREE], tags=["air", "weather"])))["id"]
    b = (await create_listed(catalog, tokens.provider_b, spec(slug="meters", title="Smart meters Grüße foo_bar",
                                                              category="energy", plans=[sub(900, "USD")])))["id"]
    await create(catalog, tokens.provider_a, spec(slug="never-listed", title="Weather stations"))
    await assert_title_words_match_products(catalog)
    steps = [
        ("post", f"/v1/products/{a}/suspend", tokens.regulator, {"reason": "Under investigation."}),
        ("post", f"/v1/products/{a}/reinstate", tokens.regulator, {"reason": "Cleared."}),
        ("put", f"/v1/products/{a}", tokens.provider_a, spec(title="Energy meters", tags=["smart"])),
        ("post", f"/v1/products/{a}/submit", tokens.provider_a, None),  # version 2: new title words
        ("post", f"/v1/products/{a}/retire", tokens.provider_a, {}),
    ]
    for method, path, headers, body in steps:
        resp = await catalog.client.request(method, path, headers=headers, json=body)
        assert resp.status_code == 200, (path, resp.text)
        await assert_title_words_match_products(catalog)
    async with catalog.db.sessionmaker() as session, session.begin():  # a listed product's row deleted
        await session.execute(text("DELETE FROM products WHERE id = :id"), {"id": b})
    await assert_title_words_match_products(catalog)


async def test_a_one_word_search_ranks_the_same_window_with_or_without_the_maintained_words(
    catalog: RunningApp, tokens: Tokens, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("listed_title_words is kept on PostgreSQL only (SQLite matches with FTS5)")
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    titles = ["Ozone ozone one", "Ozone two", "Ozone ozone ozone three", "Ozone four", "Ozone ozone five"]
    for n, title in enumerate(titles):
        await create_listed(catalog, tokens.provider_a, spec(slug=f"o{n}", title=title, summary="Tables.",
                                                             description="Readings.", tags=["air"]))
    await create_listed(catalog, tokens.provider_a, spec(slug="d1", title="Air", summary="Tables.",
                                                         description="Ozone readings.", tags=["air"]))

    async def pages() -> list[list[str]]:
        out = []
        for offset in range(7):
            async with catalog.db.sessionmaker() as session:
                query = search.SearchQuery(q="ozone", limit=2, cursor={"s": "relevance", "o": offset})
                result = await search.search(session, BUYER, query)
                out.append([hit["slug"] for hit in result.items])
        return out

    maintained = await pages()
    monkeypatch.setattr(search, "_one_word_search", lambda query: False)  # the title index only
    assert await pages() == maintained
    assert maintained[0] == ["o2", "o4"]  # the newest three (o2, o3, o4) by rank
