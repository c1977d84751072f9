"""Complementary suppression and differencing history on a small hand-made data set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from services.dataservice.datasource import data_engine
from services.dataservice.guardrails import most_similar, suppress
from services.dataservice.query_model import Filter
from tests.conftest import AppFactory
from tests.dataservice.conftest import query
from tests.support import RunningApp, TestKeys

MAPPING = """
products:
  prd_small:
    table: visits
    grade: L3_sensitive
    columns: [grp, kind, amount]
    person_column: person
    min_group_size: 10
"""


async def _small_data(path: Path) -> str:
    """Groups: A 12 people; B and C the same 6 people; D 20 people."""
    url = f"sqlite:///{path}"
    md = MetaData()
    visits = Table("visits", md, Column("id", Integer, primary_key=True), Column("person", String),
                   Column("grp", String), Column("kind", String), Column("amount", Integer))
    rows = [{"person": f"a{i}", "grp": "A", "kind": "x", "amount": 10} for i in range(12)]
    rows += [{"person": f"b{i}", "grp": g, "kind": "x", "amount": 10} for i in range(6) for g in "BC"]
    rows += [{"person": f"d{i}", "grp": "D", "kind": "y" if i == 0 else "x", "amount": 10} for i in range(20)]
    engine = data_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(md.create_all)
        await conn.execute(insert(visits), rows)
    await engine.dispose()
    return url


@pytest.fixture
async def small(service_app: AppFactory, tmp_path: Path) -> AsyncIterator[RunningApp]:
    url = await _small_data(tmp_path / "small.db")
    mapping = tmp_path / "small.yaml"
    mapping.write_text(MAPPING)
    async with service_app("dataservice", data_url=url, products_file=str(mapping),
                           differencing_history=2) as svc:
        yield svc


def _token(svc: RunningApp, keys: TestKeys, ent: str = "ent_small") -> str:
    return keys.token(typ="at+jwt", aud=svc.settings.token_audience, scope="query", ent=ent,
                      product="prd_small", version=1, purpose="research", grade="L3_sensitive",
                      limits={"max_rows": 100, "min_group_size": 10})


def test_sum_based_suppression_adds_the_smallest_shown_group() -> None:
    assert suppress([12, 4, 30], 10) == {0, 1}
    assert suppress([12, 30], 10) == set()
    assert suppress([3, 4, 5, 40], 10) == {0, 1, 2}


async def test_people_in_several_withheld_groups_count_once(small: RunningApp, test_keys: TestKeys) -> None:
    resp = await query(small, _token(small, test_keys), {
        "select": ["grp"], "aggregates": [{"fn": "count"}], "group_by": ["grp"],
        "order_by": [{"column": "grp"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # B and C hold 12 rows but only 6 people: A must be withheld too, leaving only D.
    assert [r[0] for r in body["rows"]] == ["D"] and body["suppressed_groups"] == 3


def test_most_similar_prefers_shared_conditions_over_recency() -> None:
    f = Filter.model_validate
    current = [f({"column": "grp", "op": "eq", "value": "D"}), f({"column": "kind", "op": "eq", "value": "x"})]
    earlier = [[f({"column": "amount", "op": "gt", "value": i})] for i in range(5)]
    earlier.insert(3, [f({"column": "grp", "op": "eq", "value": "D"})])
    assert most_similar(current, earlier, 1) == [[f({"column": "grp", "op": "eq", "value": "D"})]]


async def test_unrelated_queries_cannot_push_a_telling_earlier_query_out_of_view(
    small: RunningApp, test_keys: TestKeys
) -> None:
    token = _token(small, test_keys)
    whole_d = {"aggregates": [{"fn": "sum", "column": "amount"}],
               "where": [{"column": "grp", "op": "eq", "value": "D"}]}
    assert (await query(small, token, whole_d)).status_code == 200
    for i in range(4):  # more than differencing_history=2 unrelated filtered queries
        noise = {"aggregates": [{"fn": "count"}], "where": [{"column": "amount", "op": "ge", "value": i}]}
        assert (await query(small, token, noise)).status_code == 200
    one_less = {**whole_d, "where": [*whole_d["where"], {"column": "kind", "op": "eq", "value": "x"}]}
    resp = await query(small, token, one_less)
    assert resp.status_code == 422 and resp.json()["rule"] == "differencing"


def test_complementary_suppression_covers_every_coarser_grouping() -> None:
    # district x band: in district X only band "90+" is small. Asking for district totals
    # and subtracting X's shown bands would reveal it, so another band of X is withheld.
    keys = [("X", "young"), ("X", "old"), ("X", "90+"), ("Y", "young"), ("Y", "old"), ("Y", "90+")]
    people = [50, 30, 3, 60, 40, 20]
    hidden = suppress(people, 10, keys)
    assert {2, 1} <= hidden  # X/90+ and X's smallest other band
    # per district and per band, the withheld groups now hold 0 or >= 10 people
    for part in ("X", "Y"):
        held = sum(people[i] for i in hidden if keys[i][0] == part)
        assert held == 0 or held >= 10
    for band in ("young", "old", "90+"):
        held = sum(people[i] for i in hidden if keys[i][1] == band)
        assert held == 0 or held >= 10
