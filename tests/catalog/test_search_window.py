"""Relevance ranks only the newest RANK_WINDOW matches of each tier (services/catalog/search.py);
older matches follow newest first. Paging must still see every match exactly once."""

from __future__ import annotations

import pytest

from services.catalog import search
from tests.catalog.conftest import Tokens, create_listed, spec
from tests.catalog.test_search import find, slugs
from tests.support import RunningApp


async def _relevance_order(svc: RunningApp, tokens: Tokens, q: str) -> list[str]:
    order: list[str] = []
    cursor = None
    while True:
        page = await find(svc, tokens, q=q, limit=2, **({"cursor": cursor} if cursor else {}))
        order += slugs(page)
        cursor = page["next_cursor"]
        if not cursor:
            return order


async def test_a_tier_larger_than_the_window_ranks_its_newest_matches_then_lists_the_rest(
    catalog: RunningApp, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    # Oldest first; each a title match ("ozone"); o1 and o2, older than the window, are not
    # ranked, though o1 would outrank o4.
    bodies = [("o1", "Ozone ozone one"), ("o2", "Ozone two"), ("o3", "Ozone ozone ozone three"),
              ("o4", "Ozone four"), ("o5", "Ozone ozone five")]
    for slug, title in bodies:
        await create_listed(catalog, tokens.provider_a, spec(slug=slug, title=title, summary="Tables.",
                                                             description="Readings.", tags=["air"]))
    await create_listed(catalog, tokens.provider_a, spec(slug="d1", title="Air", summary="Tables.",
                                                         description="Ozone readings.", tags=["air"]))
    order = await _relevance_order(catalog, tokens, "ozone")
    assert order[:3] == ["o3", "o5", "o4"]  # the window (the newest three), by rank
    assert order[3:] == ["o2", "o1", "d1"]  # the rest of tier 1 newest first, then tier 2
