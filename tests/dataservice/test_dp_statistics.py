"""Statistically: repeating a query cannot average the noise below what the budget allows,
and the published 95 % accuracy is honest.

An entitlement with a share of ε = 1 asks one question (the sum of cost in each of 720
declared groups: district × age band × sex × service) in three ways: once at ε = 1, four
times at ε = 1/4 and sixteen times at ε = 1/16, averaging the answers. The budget stops
each strategy after exactly that many answers, and no strategy's averaged error gets below
the Laplace variance of the single ε = 1 answer, 2·(Δ/ε)² with Δ = 6 rows × 5000 €.

False-failure probability (each test, both bounds together) below 1e-6: with N = 720
independent cells and X = (averaged error)², E[X²] ≤ 6·E[X]², so the lower-tail bound for
non-negative sums P(ΣX ≤ 0.4·EΣX) ≤ exp(−0.36·N/(2·6)) ≈ 4e-10 (the larger averages have
a mean n times the bound, so this is looser still); coverage of the 95 % half-width is
Binomial(720, 0.95): P(< 90 %) ≤ exp(−720·KL(0.90‖0.95)) ≈ 4e-7 and P(> 99 %) ≈ 2e-8.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.dataservice.conftest import TokenFactory, query
from tests.support import RunningApp

GROUPS = ["district", "age_band", "sex", "service"]
QUESTION = {"select": GROUPS, "group_by": GROUPS, "limit": 1000,
            "aggregates": [{"fn": "sum", "column": "cost_eur", "as": "cost"}]}
SENSITIVITY = 6 * 5000
BUDGET = 1.0
CELLS = 9 * 10 * 2 * 4


async def _truth(demo_data_url: str) -> dict[tuple[Any, ...], int]:
    engine = create_async_engine(demo_data_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT district, age_band, sex, service, sum(cost_eur) FROM health_visits "
                "GROUP BY district, age_band, sex, service"))).all()
    finally:
        await engine.dispose()
    return {tuple(r[:4]): int(r[4]) for r in rows}


async def _ask_until_refused(ds: RunningApp, token: str, epsilon: float) -> list[dict[str, Any]]:
    answers = []
    while True:
        resp = await query(ds, token, {**QUESTION, "epsilon": epsilon})
        if resp.status_code != 200:
            assert resp.status_code == 403 and resp.json()["budget"] == "entitlement", resp.text
            return answers
        answers.append(resp.json())
        assert len(answers) <= 64, "the budget did not stop the repetition"


@pytest.mark.parametrize("repeats", [1, 4, 16])
async def test_averaging_repeated_answers_cannot_beat_the_budget(
    ds: RunningApp, data_token: TokenFactory, demo_data_url: str, repeats: int
) -> None:
    token = data_token(ent=f"ent_avg{repeats}", limits={"epsilon_budget": BUDGET, "query_quota": None})
    answers = await _ask_until_refused(ds, token, BUDGET / repeats)
    assert len(answers) == repeats  # the entitlement's share allows exactly this many
    truth = await _truth(demo_data_url)
    errors: dict[tuple[Any, ...], list[float]] = {}
    for answer in answers:
        assert len(answer["rows"]) == CELLS
        for row in answer["rows"]:
            errors.setdefault(tuple(row[:4]), []).append(row[4] - truth.get(tuple(row[:4]), 0))
    mse = sum((sum(e) / len(e)) ** 2 for e in errors.values()) / len(errors)
    best_the_budget_allows = 2 * (SENSITIVITY / BUDGET) ** 2  # one answer at the whole ε
    assert mse >= 0.4 * best_the_budget_allows, (mse, best_the_budget_allows)


async def test_the_published_95_percent_half_width_covers_95_percent(
    ds: RunningApp, data_token: TokenFactory, demo_data_url: str
) -> None:
    answer = (await query(ds, data_token(ent="ent_cover", limits={"epsilon_budget": None}),
                          {**QUESTION, "epsilon": 0.5})).json()
    [accuracy] = answer["accuracy"]
    assert accuracy["scale"] == SENSITIVITY / 0.5
    truth = await _truth(demo_data_url)
    inside = sum(abs(r[4] - truth.get(tuple(r[:4]), 0)) <= accuracy["ci95_half_width"]
                 for r in answer["rows"])
    assert 0.90 <= inside / CELLS <= 0.99, inside
