"""A search with several words, or words and facet-column filters, takes its page and facets from
one statement on PostgreSQL (services/catalog/search_pg.one_pass): at every offset it must give the page of the
general path (tier windows by rank, then the rest newest first) and the directly counted facets."""

from __future__ import annotations

import pytest

from services.catalog import search
from shared.auth import Principal
from tests.catalog.conftest import Tokens, create_listed, spec
from tests.catalog.test_search import FREE, sub
from tests.support import RunningApp

BUYER = Principal("cli_buyer", "cli_buyer", "org_buyer", frozenset({"buyer"}), None, {})


@pytest.fixture
async def ozone(catalog: RunningApp, tokens: Tokens) -> None:
    """Tier 1 ("ozone readings" in title or tags) and tier 2 (elsewhere) both larger than a
    window of 3, with repeated words so the ranks differ, in two categories and grades."""
    bodies = [
        ("t1", "Ozone readings one", "Tables.", []), ("t2", "Ozone ozone readings", "Tables.", []),
        ("t3", "Ozone", "Tables.", ["readings"]), ("t4", "Readings of ozone ozone ozone", "Tables.", []),
        ("t5", "Ozone readings readings", "Tables.", []),
        ("d1", "Ozone", "Hourly readings.", []), ("d2", "Air", "Ozone readings, ozone.", []),
        ("d3", "Air quality", "Ozone and readings and readings.", []), ("d4", "Ozone", "Readings.", []),
        ("d5", "Stations", "Ozone readings.", ["air"]), ("n1", "Ozone only", "Tables.", []),
    ]
    for n, (slug, title, description, tags) in enumerate(bodies):
        await create_listed(catalog, tokens.provider_a if n % 2 else tokens.provider_b, spec(
            slug=slug, title=title, summary="Air.", description=description, tags=tags or ["air"],
            category="energy" if n % 3 else "environment", grade="L2_internal" if n % 2 else "L1_public",
            plans=[FREE] if n % 2 else [sub(100 * (n + 1))]))


@pytest.mark.parametrize("params", [
    {"q": "ozone readings"}, {"q": "readings of the ozone"}, {"q": "air ozone"}, {"q": "tables ozone"},
    {"q": "ozone", "category": "energy"}, {"q": "readings ozone", "grade": "L1_public"},
    {"q": "ozone readings", "category": "energy", "grade": "L2_internal", "plan_kind": "free"},
    {"q": "ozone", "plan_kind": "subscription"}, {"q": "ozone", "category": "energy", "tag": "air"},
])
@pytest.mark.usefixtures("ozone")
async def test_the_one_statement_page_and_facets_are_the_general_ones(
    catalog: RunningApp, monkeypatch: pytest.MonkeyPatch, params: dict[str, str]
) -> None:
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    seen: list[str] = []
    async with catalog.db.sessionmaker() as session:
        dialect = session.get_bind().dialect.name
        for offset in range(12):
            query = search.SearchQuery(**params, limit=2, cursor={"s": "relevance", "o": offset})
            one = await search.search(session, BUYER, query)
            with monkeypatch.context() as patch:
                patch.setattr(search, "_one_pass_filters", lambda query: None)
                general = await search.search(session, BUYER, query)
            assert [h["slug"] for h in one.items] == [h["slug"] for h in general.items], offset
            assert one.next_cursor == general.next_cursor
            if offset % 2 == 0:
                seen += [h["slug"] for h in one.items]
            assert (one.total, one.facets) == await search._facets(session, search._Plan(dialect, BUYER, query))
    assert len(seen) == len(set(seen)) == one.total
