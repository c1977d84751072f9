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
from tests.support import RunningApp, TestKeys

HEALTH = "prd_demo_health"
TRANSIT = "prd_demo_transit"
FLEET = "prd_test_fleet"  # an L2 product with a masked column (test mapping only)

LIMITS = {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0, "query_quota": 1000}
GRADE_OF = {HEALTH: "L3_sensitive", TRANSIT: "L1_public", FLEET: "L2_internal"}

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
    bounds: {cost_eur: [0, 5000]}
"""


async def _seed(url: str) -> None:
    engine = data_engine(url)
    try:
        await seed_demo(engine, people=3000)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def demo_data_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo data set, generated once per session (queries only read it)."""
    path = tmp_path_factory.mktemp("dataservice-data") / "demo.db"
    url = f"sqlite+aiosqlite:///{path}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _seed(url)).result()
    return url


@pytest.fixture(scope="session")
def products_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataservice-products") / "products.yaml"
    path.write_text(TEST_PRODUCTS)
    return path


@pytest.fixture
async def ds(service_app: AppFactory, demo_data_url: str, products_file: Path) -> AsyncIterator[RunningApp]:
    async with service_app("dataservice", data_url=demo_data_url,
                           products_file=str(products_file)) as svc:
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
