from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from services.dataservice.datasource import data_engine
from services.dataservice.demo_data import seed_demo
from tests.conftest import AppFactory
from tests.support import PG_DB_PREFIX, RunningApp, TestKeys, recreate_pg_database

HEALTH = "prd_demo_health"
TRANSIT = "prd_demo_transit"
FLEET = "prd_test_fleet"  # an L2 product with a masked column (test mapping only)

LIMITS = {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0, "query_quota": 1000}
SMALL_BUDGET = "prd_test_small_budget"  # an L3 product with ε 1 per quarter and no δ
GRADE_OF = {HEALTH: "L3_sensitive", TRANSIT: "L1_public", FLEET: "L2_internal",
            SMALL_BUDGET: "L3_sensitive"}

TEST_PRODUCTS = """
products:
  prd_demo_transit:
    table: transit_stats
    grade: L1_public
    columns: [district, year, month, mode, trips, avg_delay_min]
    max_rows: 50
  prd_test_fleet:
    table: transit_stats
    grade: L2_internal
    columns: [district, year, month, mode, trips, operator_contact]
    masked: [operator_contact]
  prd_demo_health:
    table: health_visits
    grade: L3_sensitive
    columns: [district, age_band, sex, year, service, cost_eur, wait_days]
    person_column: person_id
    min_group_size: 10
    max_rows_per_person: 6
    bounds: {cost_eur: [0, 5000], wait_days: [0, 365]}
    domains:
      district: [Altstadt, Nordhafen, Westend, Südpark, Oststadt, Bergheim, Lindenau, Mühlental,
                 Harbour Isle]
      age_band: [0-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, 70-79, 80-89, 90+]
      sex: [F, M]
      service: [gp, dental, specialist, emergency]
    privacy: {epsilon: 100, delta: 1.0e-6, period: month, query_epsilon: 0.1}
  prd_test_small_budget:      # the same people with a small budget and no delta
    table: health_visits
    grade: L3_sensitive
    columns: [district, age_band, sex, year, cost_eur]
    person_column: person_id
    max_rows_per_person: 6
    domains: {district: [Altstadt, Nordhafen, Westend, Südpark, Oststadt, Bergheim, Lindenau,
                         Mühlental, Harbour Isle]}
    privacy: {epsilon: 1.0, period: quarter, query_epsilon: 0.25}
  prd_test_bounded:           # the same people, at most 2 visits each, costs clamped to 0..100
    table: health_visits
    grade: L3_sensitive
    columns: [district, service, cost_eur]
    person_column: person_id
    max_rows_per_person: 2
    bounds: {cost_eur: [0, 100]}
    privacy: {epsilon: 10}
"""


async def _seed(url: str) -> None:
    engine = data_engine(url)
    try:
        await seed_demo(engine, people=3000)
    finally:
        await engine.dispose()


def _seed_once(url: str) -> str:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _seed(url)).result()
    return url


@pytest.fixture(scope="session")
def sqlite_demo_data_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo data set in SQLite, generated once per session (queries only read it)."""
    return _seed_once(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('dataservice-data') / 'demo.db'}")


@pytest.fixture(scope="session")
def pg_demo_data_url() -> str:
    """The demo data set in a PostgreSQL database of its own, once per session."""
    return _seed_once(recreate_pg_database(f"{PG_DB_PREFIX}_ds_provider"))


@pytest.fixture
def demo_data_url(backend: str, request: pytest.FixtureRequest) -> str:
    """The provider's database on the test's back end: the PostgreSQL variants run the
    query suite against provider data in PostgreSQL too, not only the service's own DB."""
    name = "pg_demo_data_url" if backend == "postgresql" else "sqlite_demo_data_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def products_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataservice-products") / "products.yaml"
    path.write_text(TEST_PRODUCTS)
    return path


@pytest.fixture
async def ds(service_app: AppFactory, demo_data_url: str, products_file: Path) -> AsyncIterator[RunningApp]:
    async with service_app("dataservice", data_url=demo_data_url, products_file=str(products_file),
                           release_check_seconds=0) as svc:  # releases are made by the first query
        yield svc


TokenFactory = Callable[..., str]


@pytest.fixture
def data_token(ds: RunningApp, test_keys: TestKeys) -> TokenFactory:
    """A data-access token for this data service; keyword arguments override claims."""

    def make(product: str = HEALTH, *, limits: dict[str, Any] | None = None, **claims: Any) -> str:
        base: dict[str, Any] = {
            "typ": "at+jwt", "aud": ds.settings.token_audience, "roles": [], "scope": "query",
            "ent": "ent_test", "product": product, "version": 1, "purpose": "research",
            "grade": GRADE_OF.get(product, "L3_sensitive"), "limits": {**LIMITS, **(limits or {})},
            "org": "org_buyer", "sub": "cli_buyer",
        }
        base.update(claims)
        return test_keys.token(**base)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def query(svc: RunningApp, token: str, body: dict[str, Any]) -> Any:
    return await svc.client.post("/v1/query", json=body, headers=bearer(token))
