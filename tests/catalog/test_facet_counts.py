"""listed_facet_counts (migration 0005) answers filter-only searches: after every lifecycle change
it must give exactly the totals and facets that counting the products gives."""

from __future__ import annotations

import itertools

import pytest

from services.catalog import search
from shared.auth import Principal
from tests.catalog.conftest import Tokens, create, create_listed, spec
from tests.catalog.test_search import FREE, sub
from tests.support import RunningApp

BUYER = Principal("cli_buyer", "cli_buyer", "org_buyer", frozenset({"buyer"}), None, {})
QUERIES = [
    search.SearchQuery(category=category, grade=grade, plan_kind=kind, currency=currency)
    for category, grade, kind, currency in itertools.product(
        (None, "environment", "energy"), (None, "L1_public", "L2_internal"), (None, "free", "subscription"),
        (None, "EUR", "USD"))
]


async def assert_counts_match_products(svc: RunningApp) -> None:
    async with svc.db.sessionmaker() as session:
        for query in QUERIES:
            assert search._counted_facets(query)
            counted = await search._facets_from_counts(session, query)
            direct = await search._facets(session, search._Plan(session.get_bind().dialect.name, BUYER, query))
            assert counted == direct, query


async def test_facet_counts_follow_listing_suspension_reinstatement_edits_and_retirement(
    catalog: RunningApp, tokens: Tokens
) -> None:
    await assert_counts_match_products(catalog)  # empty catalog
    a = (await create_listed(catalog, tokens.provider_a, spec(plans=[FREE])))["id"]
    await create_listed(catalog, tokens.provider_b, spec(slug="meters", category="energy", grade="L2_internal",
                                                         plans=[sub(900, "USD")]))
    await create(catalog, tokens.provider_a, spec(slug="never-listed"))
    await assert_counts_match_products(catalog)
    steps = [
        ("post", f"/v1/products/{a}/suspend", tokens.regulator, {"reason": "Under investigation."}),
        ("post", f"/v1/products/{a}/reinstate", tokens.regulator, {"reason": "Cleared."}),
        ("put", f"/v1/products/{a}", tokens.provider_a, spec(category="energy", plans=[sub(500)])),
        ("post", f"/v1/products/{a}/submit", tokens.provider_a, None),  # version 2: new category and plans
        ("post", f"/v1/products/{a}/retire", tokens.provider_a, {}),
    ]
    for method, path, headers, body in steps:
        resp = await catalog.client.request(method, path, headers=headers, json=body)
        assert resp.status_code == 200, (path, resp.text)
        await assert_counts_match_products(catalog)


async def test_a_filter_only_search_reports_the_maintained_counts(catalog: RunningApp, tokens: Tokens) -> None:
    await create_listed(catalog, tokens.provider_a, spec(plans=[FREE]))
    await create_listed(catalog, tokens.provider_b, spec(slug="meters", category="energy", plans=[sub(900)]))
    resp = await catalog.client.get("/v1/products", params={"plan_kind": "free"}, headers=tokens.buyer)
    assert resp.status_code == 200
    body = resp.json()
    assert body["total"] == 1
    assert body["facets"]["category"] == {"environment": 1}


async def assert_word_counts_match_products(svc: RunningApp, words: list[str]) -> None:
    async with svc.db.sessionmaker() as session:
        for word in words:
            query = search.SearchQuery(q=word)
            assert search._one_word_search(query)
            counted = await search._facets_of_one_word(session, query)
            direct = await search._facets(session, search._Plan("postgresql", BUYER, query))
            assert (counted or (0, {"category": {}, "grade": {}, "plan_kind": dict.fromkeys(search.PLAN_KINDS, 0)})
                    ) == direct, word


async def test_word_facet_counts_follow_the_words_of_listed_products(catalog: RunningApp, tokens: Tokens,
                                                                     backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("word_facet_counts is kept on PostgreSQL only (SQLite searches count directly)")
    words = ["weather", "rainfall", "stations", "meters", "energy", "grüße", "nothing"]
    a = (await create_listed(catalog, tokens.provider_a, spec(plans=[FREE])))["id"]
    await create_listed(catalog, tokens.provider_b, spec(slug="meters", title="Smart meters Grüße", category="energy",
                                                         plans=[sub(900, "USD")]))
    await assert_word_counts_match_products(catalog, words)
    steps = [
        ("post", f"/v1/products/{a}/suspend", tokens.regulator, {"reason": "Under investigation."}),
        ("post", f"/v1/products/{a}/reinstate", tokens.regulator, {"reason": "Cleared."}),
        ("put", f"/v1/products/{a}", tokens.provider_a, spec(title="Energy meters", category="energy")),
        ("post", f"/v1/products/{a}/submit", tokens.provider_a, None),  # version 2: new words
        ("post", f"/v1/products/{a}/retire", tokens.provider_a, {}),
    ]
    for method, path, headers, body in steps:
        resp = await catalog.client.request(method, path, headers=headers, json=body)
        assert resp.status_code == 200, (path, resp.text)
        await assert_word_counts_match_products(catalog, words)
