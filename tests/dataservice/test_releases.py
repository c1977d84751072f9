"""The contribution-bounded copy behind every L3 answer: at most max_rows_per_person rows per
person, values clamped, one copy per product and period however many replicas ask."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.dataservice.releases import Releases, table_prefix
from services.dataservice.runtime import DataServiceState
from tests.support import RunningApp

BOUNDED = "prd_test_bounded"


async def _own_tables(ds: RunningApp) -> set[str]:
    async with ds.db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    return {n for n in names if n.startswith(table_prefix(BOUNDED))}


async def test_each_person_contributes_at_most_the_declared_rows_with_clamped_values(
    ds: RunningApp, demo_data_url: str
) -> None:
    source = ds.state(DataServiceState).data_source
    release = await ds.state(DataServiceState).query_service.releases.current(BOUNDED, source.bound[BOUNDED], "2026-11")
    engine = create_async_engine(demo_data_url)
    async with engine.connect() as conn:
        expected = (await conn.execute(text(
            "SELECT sum(CASE WHEN n > 2 THEN 2 ELSE n END) FROM "
            "(SELECT count(*) AS n FROM health_visits GROUP BY person_id) AS per_person"))).scalar_one()
    await engine.dispose()
    assert release.rows == expected  # every person kept, with at most 2 of their visits
    copy = release.bound.table
    async with ds.db.engine.connect() as conn:
        low, high = (await conn.execute(select(func.min(release.clamped_column("cost_eur")),
                                               func.max(release.clamped_column("cost_eur"))))).one()
        raw_high = (await conn.execute(select(func.max(copy.c.cost_eur)))).scalar_one()
    assert (low >= 0, high) == (True, 100) and raw_high > 100  # sums use the clamped values
    assert "person_id" not in copy.c  # the pseudonym is not copied


async def test_two_replicas_building_at_once_share_one_copy(ds: RunningApp) -> None:
    source = ds.state(DataServiceState).data_source
    before = await _own_tables(ds)
    replicas = [Releases(source.engine, ds.db.engine) for _ in range(2)]
    a, b = await asyncio.gather(*(r.current(BOUNDED, source.bound[BOUNDED], "2026-10") for r in replicas))
    assert a.table_name == b.table_name
    assert await _own_tables(ds) - before == {a.table_name}  # the loser dropped its own copy


async def test_a_new_period_gets_a_new_copy_and_the_old_one_goes(ds: RunningApp) -> None:
    releases = ds.state(DataServiceState).query_service.releases
    bp = ds.state(DataServiceState).data_source.bound[BOUNDED]
    november = await releases.current(BOUNDED, bp, "2026-11")
    december = await releases.current(BOUNDED, bp, "2026-12")
    assert december.table_name != november.table_name
    tables = await _own_tables(ds)
    assert december.table_name in tables and november.table_name not in tables
