"""The attacker's side: ordinary buyer tokens trying to learn one person's values from the
L3 product through aggregate answers (issue 10's attack families).

Each attack is written as the attacker would run it and returns what it recovered; the
test asserts the recovery failed. Against the pre-DP service (exact answers, differencing
history per entitlement, free refusals) every one of them recovered the victim exactly.

The victim is the only person of the demo's tiny district "Harbour Isle" in age band
30-39 and sex F (one visit). "Exact recovery" compares several values at once (visits,
cost, waiting days), so a chance hit of the noise is below 1e-9 per attack (discrete
Laplace noise hits one exact integer with probability at most ~1/(2·scale); the cost
sum's scale alone is ≥ 6·5000/ε).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.dataservice.conftest import TokenFactory, query
from tests.support import RunningApp

VICTIM_FILTERS = [{"column": "age_band", "op": "eq", "value": "30-39"},
                  {"column": "sex", "op": "eq", "value": "F"}]
NOT_HARBOUR = {"column": "district", "op": "ne", "value": "Harbour Isle"}
STATS = [{"fn": "count", "as": "visits"}, {"fn": "sum", "column": "cost_eur", "as": "cost"},
         {"fn": "sum", "column": "wait_days", "as": "wait"}]
COUNT_ONLY = [{"fn": "count", "as": "visits"}]

Ask = Callable[[dict[str, Any]], Awaitable[Any]]


async def _victim(demo_data_url: str) -> tuple[int, int, int]:
    """The victim's true (visits, cost, waiting days), read straight from the provider DB."""
    engine = create_async_engine(demo_data_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT count(*), sum(cost_eur), sum(wait_days) FROM health_visits "
                "WHERE district = 'Harbour Isle' AND age_band = '30-39' AND sex = 'F'"))).one()
            people = (await conn.execute(text(
                "SELECT count(DISTINCT person_id) FROM health_visits "
                "WHERE district = 'Harbour Isle' AND age_band = '30-39' AND sex = 'F'"))).scalar_one()
    finally:
        await engine.dispose()
    assert people == 1, "the demo data changed: pick another victim"
    return int(row[0]), int(row[1]), int(row[2])


async def _max_cost(demo_data_url: str) -> int:
    engine = create_async_engine(demo_data_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT max(cost_eur) FROM health_visits"))).scalar_one())
    finally:
        await engine.dispose()


def _asker(ds: RunningApp, token: str) -> Ask:
    async def ask(body: dict[str, Any]) -> Any:
        resp = await query(ds, token, body)
        return resp.json() if resp.status_code == 200 else None
    return ask


def _totals(answer: Any, width: int) -> tuple[float, ...] | None:
    """Column sums of an answer's aggregate columns (the attacker adds the shown groups up)."""
    if answer is None:
        return None
    rows = answer["rows"]
    return tuple(sum(float(r[-width + i] or 0) for r in rows) for i in range(width))


async def total_minus_filtered_groups(first: Ask, second: Ask, stats: list[dict[str, Any]]
                                      ) -> tuple[float, ...] | None:
    """Everyone with the victim's age band and sex, minus the same people grouped by district
    with the victim's district filtered out *before* grouping (absent, not withheld)."""
    total = _totals(await first({"aggregates": stats, "where": VICTIM_FILTERS}), len(stats))
    grouped = _totals(await second({
        "select": ["district"], "group_by": ["district"], "aggregates": stats,
        "where": [*VICTIM_FILTERS, NOT_HARBOUR]}), len(stats))
    if total is None or grouped is None:
        return None
    return tuple(round(a - b, 6) for a, b in zip(total, grouped, strict=True))


def _exact(recovered: tuple[float, ...] | None, truth: tuple[int, ...]) -> bool:
    return recovered is not None and all(abs(r - t) < 0.5 for r, t in zip(recovered, truth, strict=True))


async def test_total_minus_a_filtered_grouped_answer_does_not_reveal_a_person(
    ds: RunningApp, data_token: TokenFactory, demo_data_url: str
) -> None:
    ask = _asker(ds, data_token(ent="ent_attacker"))
    recovered = await total_minus_filtered_groups(ask, ask, STATS)
    assert not _exact(recovered, await _victim(demo_data_url)), recovered


@pytest.mark.parametrize("split", ["two entitlements of one buyer", "two buyer organisations"])
async def test_the_same_pair_split_over_two_tokens_does_not_reveal_a_person(
    ds: RunningApp, data_token: TokenFactory, demo_data_url: str, split: str
) -> None:
    other_org = "org_buyer" if split == "two entitlements of one buyer" else "org_accomplice"
    first = _asker(ds, data_token(ent="ent_first", org="org_buyer", sub="cli_one"))
    second = _asker(ds, data_token(ent="ent_second", org=other_org, sub="cli_two"))
    recovered = await total_minus_filtered_groups(first, second, STATS)
    assert not _exact(recovered, await _victim(demo_data_url)), recovered


async def test_flooding_the_history_does_not_let_a_differencing_pair_through(
    ds: RunningApp, data_token: TokenFactory, demo_data_url: str
) -> None:
    """Q1 (everyone of the victim's band and sex), then fillers that rank as more similar to
    Q2 than Q1 does, then Q2 (the same without the victim's district): Q1 − Q2 = victim."""
    ask = _asker(ds, data_token(ent="ent_flood", limits={"query_quota": None}))
    first = _totals(await ask({"aggregates": STATS, "where": VICTIM_FILTERS}), len(STATS))
    for i in range(70):  # more than the old 64-query history; every filler has the same rows
        await ask({"aggregates": COUNT_ONLY, "where": [
            *VICTIM_FILTERS, {"column": "year", "op": "eq", "value": 2024},
            {"column": "cost_eur", "op": "ge", "value": -i}]})
    second = _totals(await ask({"aggregates": STATS, "where": [*VICTIM_FILTERS, NOT_HARBOUR]}),
                     len(STATS))
    recovered = None if first is None or second is None else tuple(
        a - b for a, b in zip(first, second, strict=True))
    assert not _exact(recovered, await _victim(demo_data_url)), recovered


async def test_refusals_are_no_oracle_for_one_persons_maximum(
    ds: RunningApp, data_token: TokenFactory, demo_data_url: str
) -> None:
    """Binary search on `cost_eur < t`: the old service refused exactly when 1..k-1 people had
    a visit costing t or more, and refusals were free, so the flip point was the highest
    single cost in the data (one person's value)."""
    token = data_token(ent="ent_oracle", limits={"query_quota": None})
    statuses: list[int] = []

    async def refused(t: int) -> bool | None:
        resp = await query(ds, token, {"aggregates": COUNT_ONLY,
                                       "where": [{"column": "cost_eur", "op": "lt", "value": t}]})
        statuses.append(resp.status_code)
        if resp.status_code == 422:
            return True
        return False if resp.status_code == 200 else None  # None: out of budget, stop

    lo = None
    for t in range(5000, 0, -25):  # find one refused threshold below the maximum
        r = await refused(t)
        if r is None:
            break
        if r:
            lo = t
            break
    found = None
    if lo is not None:
        hi = 5001
        while hi - lo > 1:  # invariant: refused(lo), answered(hi)
            mid = (lo + hi) // 2
            r = await refused(mid)
            if r is None:
                break
            lo, hi = (mid, hi) if r else (lo, mid)
        else:
            found = lo
    assert found != await _max_cost(demo_data_url), f"recovered the maximum {found}"
    assert 422 not in statuses, "a refusal that depends on the data"


async def test_omitting_epsilon_once_the_budget_is_spent_gets_no_answer(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_spent", limits={"epsilon_budget": 0.2, "query_quota": None})
    body = {"aggregates": STATS, "where": VICTIM_FILTERS}
    while (await query(ds, token, {**body, "epsilon": 0.1})).status_code == 200:
        pass
    after = await query(ds, token, body)  # no epsilon at all
    assert after.status_code in (403, 429), after.text
    assert after.headers["content-type"].startswith("application/problem+json")
    assert "budget" in after.json()["detail"]


async def test_an_epsilon_too_small_to_charge_is_not_free(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(ent="ent_tiny", limits={"epsilon_budget": 1.0})
    resp = await query(ds, token, {"aggregates": COUNT_ONLY, "epsilon": 4e-7})
    if resp.status_code == 200:
        assert resp.json()["epsilon_remaining"] < 1.0, "answered for free"
    else:
        assert resp.status_code == 422 and resp.json()["rule"] == "epsilon-minimum", resp.text
