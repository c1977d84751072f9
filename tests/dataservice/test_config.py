"""The provider mapping, the demo data and the migrations."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.dataservice.app import open_data_source
from services.dataservice.config import ConfigError, load_products
from services.dataservice.datasource import async_url, data_engine
from services.dataservice.demo_data import seed_demo
from services.dataservice.settings import DEMO_PRODUCTS_FILE, DataServiceSettings
from shared.migrations import downgrade, upgrade
from tests.support import POSTGRES_URL, migrations_dir, recreate_pg_database

BASE = {"table": "t", "grade": "L1_public", "columns": ["a", "b"]}


def _write(tmp_path: Path, products: dict[str, object], suffix: str = ".json") -> Path:
    path = tmp_path / f"products{suffix}"
    path.write_text(json.dumps({"products": products}))
    return path


def test_demo_mapping_loads_with_configurable_ids() -> None:
    products = load_products(DEMO_PRODUCTS_FILE, {"prd_demo_health": "prd_custom"})
    assert set(products) == {"prd_demo_transit", "prd_custom"}
    assert products["prd_custom"].grade == "L3_sensitive"
    assert products["prd_custom"].person_column == "person_id"


def test_json_mapping_loads(tmp_path: Path) -> None:
    products = load_products(_write(tmp_path, {"p1": {**BASE, "masked": ["b"], "grade": "L2_internal"}}))
    assert products["p1"].masked == ["b"]


@pytest.mark.parametrize(("entry", "message"), [
    ({**BASE, "grade": "L4_restricted"}, "L4_restricted"),
    ({**BASE, "grade": "L3_sensitive"}, "person_column"),
    ({**BASE, "masked": ["c"]}, "masked columns"),
    ({**BASE, "table": "t; drop table x"}, "plain table name"),
    ({**BASE, "columns": ["a b"]}, "plain column name"),
    ({**BASE, "grade": "L3_sensitive", "person_column": "a"}, "must not also be an exposed"),
    ({**BASE, "grade": "L3_sensitive", "person_column": "p"}, "privacy block"),
    ({**BASE, "grade": "L3_sensitive", "person_column": "p",
      "privacy": {"epsilon": 1, "query_epsilon": 2}}, "query_epsilon is larger"),
    ({**BASE, "domains": {"c": ["x"]}}, "domains given for 'c'"),
    ({**BASE, "domains": {"a": ["x", "x"]}}, "listed twice"),
    ({**BASE, "max_rows_per_person": 0}, "max_rows_per_person"),
])
def test_bad_mappings_are_refused_with_the_reason(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_products(_write(tmp_path, {"p1": entry}))


def test_sync_urls_get_async_drivers() -> None:
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u@h/db").startswith("postgresql+asyncpg://")


def test_settings_default_to_the_demo() -> None:
    s = DataServiceSettings()
    assert s.uses_demo and s.token_audience == "http://127.0.0.1:8010"


async def test_demo_data_is_deterministic(tmp_path: Path) -> None:
    dumps = []
    for name in ("a", "b"):
        engine = data_engine(f"sqlite:///{tmp_path / name}.db")
        await seed_demo(engine, people=200)
        async with engine.connect() as conn:
            dumps.append((await conn.execute(text(
                "SELECT person_id, district, cost_eur FROM health_visits ORDER BY visit_id"))).all())
        await engine.dispose()
    assert dumps[0] == dumps[1] and len(dumps[0]) > 200


async def test_product_with_a_missing_table_is_unavailable_not_fatal(
    service_app, demo_data_url: str, tmp_path: Path, test_keys
) -> None:
    path = _write(tmp_path, {"prd_gone": {**BASE, "table": "no_such_table"}})
    async with service_app("dataservice", data_url=demo_data_url, products_file=str(path)) as ds:
        token = test_keys.token(typ="at+jwt", aud=ds.settings.token_audience, scope="query",
                                ent="ent_x", product="prd_gone", version=1, purpose="research",
                                grade="L1_public", limits={"max_rows": 10})
        resp = await ds.client.post("/v1/query", json={}, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 503
        assert (await ds.client.get("/healthz")).status_code == 200


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_migrations_upgrade_and_downgrade(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("set SLUICE_TEST_POSTGRES_URL to run the PostgreSQL variant")
        import os
        url = recreate_pg_database(f"{os.environ.get('SLUICE_TEST_DB_PREFIX', 'sluice_test')}_ds_migrations")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(migrations_dir("dataservice"), url)
    tables = await _tables(url)
    assert {"outbox", "entitlement_usage", "privacy_budgets", "privacy_charges", "dp_releases"} <= tables
    assert "query_history" not in tables  # the differencing history is gone with DP
    engine = create_async_engine(url)  # a bounded copy made at run time, as the service does
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE dp_x_2026_11_abc (district VARCHAR(40))"))
        await conn.execute(text("INSERT INTO dp_releases (product_id, period, table_name, rows, built_at) "
                                "VALUES ('p', '2026-11', 'dp_x_2026_11_abc', 0, '2026-11-29 00:00:00')"))
    await engine.dispose()
    downgrade(migrations_dir("dataservice"), url, "base")
    assert await _tables(url) <= {"alembic_version"}  # the copies went with their registry
    upgrade(migrations_dir("dataservice"), url)
    assert "privacy_budgets" in await _tables(url)


async def test_replicas_starting_together_generate_the_demo_data_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """make cluster starts two data services at once on the same demo file: one generates it, the
    other finds it (two would drop and refill the tables under each other's feet)."""
    monkeypatch.chdir(tmp_path)  # the demo file is var/dataservice-demo.db of the working directory
    settings = DataServiceSettings(demo_people=200)
    with caplog.at_level(logging.INFO, logger="sluice.dataservice"):
        sources = await asyncio.gather(*(open_data_source(settings) for _ in range(3)))
    try:
        generated = [r for r in caplog.records if r.getMessage().startswith("generated the demo data")]
        assert len(generated) == 1
        for source in sources:
            assert set(source.products) >= {"prd_demo_transit", "prd_demo_health"}
    finally:
        for source in sources:
            await source.dispose()
