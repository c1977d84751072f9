"""Search on a small seeded catalog with hand-checked expectations (SQLite FTS5 and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.catalog.conftest import ORG_B, Tokens, create, create_listed, l3_spec, spec
from tests.support import RunningApp

FREE = {"name": "Free", "kind": "free", "currency": "EUR", "access_days": 30}


def sub(price: int, currency: str = "EUR") -> dict[str, Any]:
    return {"name": "Monthly", "kind": "subscription", "currency": currency, "price": price, "period": "month"}


SEED: list[tuple[str, dict[str, Any]]] = [
    ("a", spec(slug="rain-radar", title="Rainfall radar archive", summary="Five-minute radar composites.",
               description="Precipitation estimates for the whole country.", tags=["rainfall", "radar"],
               plans=[FREE])),
    ("a", spec()),  # weather-stations: "rainfall" only in the summary
    ("a", spec(slug="flood-claims", title="Flood insurance claims", summary="Claims by postcode.",
               description="Claims after heavy rainfall events in 2021.", category="finance",
               tags=["insurance"], grade="L2_internal", sample=None,
               schema={"fields": [{"name": "postcode", "type": "string"}]},
               plans=[{"name": "Once", "kind": "one_time", "currency": "EUR", "price": 19900,
                       "access_days": 365}])),
    ("b", spec(slug="bike-trips", title="Bike sharing trips", summary="Trips between docking stations.",
               description="Anonymous trip counts.", category="mobility", tags=["mobility", "cycling"],
               grade="L2_internal", sample=None, schema={"fields": [{"name": "dock", "type": "string"}]},
               plans=[sub(2900)])),
    ("b", spec(slug="energy-use", title="Household energy consumption", summary="Smart meter aggregates.",
               description="Monthly kWh per street.", category="energy", tags=["energy"], grade="L2_internal",
               sample=None, schema={"fields": [{"name": "street", "type": "string"}]},
               plans=[sub(9900, "USD")])),
]


@pytest.fixture
async def seeded(catalog: RunningApp, tokens: Tokens) -> AsyncIterator[dict[str, str]]:
    ids: dict[str, str] = {}
    for who, body in SEED:
        headers = tokens.provider_a if who == "a" else tokens.provider_b
        ids[body["slug"]] = (await create_listed(catalog, headers, body))["id"]
    commuter = await create(catalog, tokens.provider_a, l3_spec(
        tags=["mobility", "commuting"], category="mobility",
        summary="Daily commuter trips between districts.", description="Aggregated by age band.",
        plans=[{"name": "Metered", "kind": "metered", "currency": "EUR", "price": 1000, "period": "month",
                "price_per_query": 5}]))
    await catalog.client.post(f"/v1/products/{commuter['id']}/submit", headers=tokens.provider_a)
    await catalog.client.post(f"/v1/products/{commuter['id']}/approve", json={"note": "checked"},
                              headers=tokens.regulator)
    ids["commuter-flows"] = commuter["id"]
    await create(catalog, tokens.provider_a, spec(slug="draft-rain", title="Rainfall draft never listed"))
    yield ids


async def find(svc: RunningApp, tokens: Tokens, **params: Any) -> dict[str, Any]:
    resp = await svc.client.get("/v1/products", params=params, headers=tokens.buyer)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def slugs(page: dict[str, Any]) -> list[str]:
    return [p["slug"] for p in page["items"]]


async def test_title_match_ranks_above_summary_above_description(
    catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]
) -> None:
    page = await find(catalog, tokens, q="rainfall")
    assert slugs(page) == ["rain-radar", "weather-stations", "flood-claims"]


async def test_search_stems_english_words(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    page = await find(catalog, tokens, q="station")
    assert slugs(page) == ["weather-stations", "bike-trips"]


async def test_all_words_must_match(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    assert slugs(await find(catalog, tokens, q="rainfall radar")) == ["rain-radar"]
    assert slugs(await find(catalog, tokens, q="rainfall unicorns")) == []


async def test_punctuation_in_queries_is_harmless(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    page = await find(catalog, tokens, q='radar" OR NOT (* -')
    assert slugs(page) == ["rain-radar"]
    assert slugs(await find(catalog, tokens, q="!!!")) == []


async def test_facets_count_the_matching_products(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    page = await find(catalog, tokens, q="rainfall")
    assert page["total"] == 3
    assert page["facets"] == {
        "category": {"environment": 2, "finance": 1},
        "grade": {"L1_public": 2, "L2_internal": 1},
        "plan_kind": {"free": 1, "one_time": 1, "subscription": 1, "metered": 0},
    }
    everything = await find(catalog, tokens)
    assert everything["total"] == 6
    assert everything["facets"]["category"] == {"mobility": 2, "environment": 2, "energy": 1, "finance": 1}
    assert everything["facets"]["grade"] == {"L1_public": 2, "L2_internal": 3, "L3_sensitive": 1}


async def test_filters(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    assert sorted(slugs(await find(catalog, tokens, category="mobility"))) == ["bike-trips", "commuter-flows"]
    assert slugs(await find(catalog, tokens, grade="L3_sensitive")) == ["commuter-flows"]
    assert slugs(await find(catalog, tokens, tag="cycling")) == ["bike-trips"]
    assert slugs(await find(catalog, tokens, plan_kind="free")) == ["rain-radar"]
    assert sorted(slugs(await find(catalog, tokens, provider=ORG_B))) == ["bike-trips", "energy-use"]
    assert slugs(await find(catalog, tokens, q="trips", category="energy")) == []


async def test_max_price_in_a_currency_sorted_by_price(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    page = await find(catalog, tokens, max_price=5000, currency="EUR", sort="price")
    assert slugs(page) == ["rain-radar", "commuter-flows", "bike-trips", "weather-stations"]
    assert [p["min_price"] for p in page["items"]] == [0, 1000, 2900, 4900]
    assert slugs(await find(catalog, tokens, currency="USD")) == ["energy-use"]


async def test_max_price_without_currency_is_a_400(catalog: RunningApp, tokens: Tokens) -> None:
    resp = await catalog.client.get("/v1/products", params={"max_price": 100}, headers=tokens.buyer)
    assert resp.status_code == 400 and resp.json()["type"].endswith("/max-price-needs-currency")


async def test_newest_pages_with_a_cursor(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await find(catalog, tokens, sort="newest", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 6 and len({p["id"] for p in seen}) == 6
    stamps = [p["listed_at"] for p in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert seen[0]["slug"] == "commuter-flows"  # approved last, so listed last


async def test_relevance_pages_keep_the_order(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    order: list[str] = []
    cursor = None
    for _ in range(4):
        page = await find(catalog, tokens, q="rainfall", limit=1, **({"cursor": cursor} if cursor else {}))
        order += slugs(page)
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert order == ["rain-radar", "weather-stations", "flood-claims"]


async def test_price_pages_with_a_cursor(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    first = await find(catalog, tokens, sort="price", currency="EUR", limit=3)
    second = await find(catalog, tokens, sort="price", currency="EUR", limit=3, cursor=first["next_cursor"])
    assert slugs(first) + slugs(second) == ["rain-radar", "commuter-flows", "bike-trips", "weather-stations",
                                            "flood-claims"]
    assert second["next_cursor"] is None


async def test_a_cursor_from_another_sort_is_refused(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    first = await find(catalog, tokens, sort="price", currency="EUR", limit=1)
    resp = await catalog.client.get("/v1/products", params={"sort": "newest", "cursor": first["next_cursor"]},
                                    headers=tokens.buyer)
    assert resp.status_code == 400 and resp.json()["type"].endswith("/invalid-cursor")


async def test_search_hits_carry_price_and_plan_kinds(catalog: RunningApp, tokens: Tokens, seeded: dict[str, str]) -> None:
    hit = (await find(catalog, tokens, q="commuter"))["items"][0]
    assert hit["id"] == seeded["commuter-flows"]
    assert (hit["currency"], hit["min_price"], hit["plan_kinds"]) == ("EUR", 1000, ["metered"])
    assert hit["tags"] == ["mobility", "commuting"] and hit["status"] == "listed"


async def test_a_title_match_beats_many_description_matches(catalog: RunningApp, tokens: Tokens) -> None:
    await create_listed(catalog, tokens.provider_a, spec(
        slug="wordy", title="Regional statistics", summary="Tables.",
        description="Ozone ozone ozone ozone ozone readings and more ozone.", tags=["stats"]))
    await create_listed(catalog, tokens.provider_a, spec(
        slug="titled", title="Ozone levels", summary="Tables.", description="Hourly readings.", tags=["air"]))
    page = await find(catalog, tokens, q="ozone")
    assert slugs(page) == ["titled", "wordy"]
    first = await find(catalog, tokens, q="ozone", limit=1)
    second = await find(catalog, tokens, q="ozone", limit=1, cursor=first["next_cursor"])
    assert slugs(first) + slugs(second) == ["titled", "wordy"] and second["next_cursor"] is None
