from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import AppFactory
from tests.support import RunningApp, TestKeys

ORG_A = "org_provider_a"
ORG_B = "org_provider_b"
BUYER_ORG = "org_buyer"


@pytest.fixture
async def catalog(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    async with service_app("catalog", public_url="https://catalog.example") as svc:
        yield svc


class Tokens:
    """Bearer headers for the parties of a catalog test."""

    def __init__(self, keys: TestKeys) -> None:
        self.keys = keys

    def _h(self, roles: list[str], org: str | None, sub: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.keys.token(roles=roles, org=org, sub=sub)}

    @property
    def provider_a(self) -> dict[str, str]:
        return self._h(["provider"], ORG_A, "cli_prov_a")

    @property
    def provider_b(self) -> dict[str, str]:
        return self._h(["provider"], ORG_B, "cli_prov_b")

    @property
    def buyer(self) -> dict[str, str]:
        return self._h(["buyer"], BUYER_ORG, "cli_buyer")

    @property
    def regulator(self) -> dict[str, str]:
        return self._h(["regulator"], "org_regulator", "cli_regulator")

    @property
    def operator(self) -> dict[str, str]:
        return self._h(["operator"], "org_platform", "cli_operator")

    @property
    def service(self) -> dict[str, str]:
        return self._h(["service"], "org_platform", "svc-orders")


@pytest.fixture
def tokens(test_keys: TestKeys) -> Tokens:
    return Tokens(test_keys)


BASE_SPEC: dict[str, Any] = {
    "slug": "weather-stations",
    "title": "Weather station readings",
    "summary": "Hourly temperature and rainfall from 300 stations.",
    "description": "# Weather\nHourly readings, quality-checked.",
    "category": "environment",
    "tags": ["weather", "climate"],
    "grade": "L1_public",
    "personal_data": "none",
    "rights": {
        "resource_holder": "National Weather Office",
        "processing_right_holder": "Weather Data Lab",
        "operating_right_holder": "Provider A Ltd",
        "provenance": "Automatic stations, 2020-2024",
        "licence": "CC-BY-4.0",
    },
    "schema": {"fields": [
        {"name": "station", "type": "string", "description": "Station code"},
        {"name": "hour", "type": "datetime"},
        {"name": "temp_c", "type": "number"},
    ]},
    "sample": [{"station": "AB1", "hour": "2024-01-01T00:00:00", "temp_c": 3.5}],
    "delivery": {"data_service_url": "https://data.provider-a.example", "mode": "rows"},
    "usage_policy": {"allowed_purposes": ["research", "commercial"], "max_duration_days": 365,
                     "resale_allowed": False, "territories": ["EU"]},
    "derived_from": [],
    "plans": [
        {"name": "Monthly", "kind": "subscription", "currency": "EUR", "price": 4900,
         "period": "month", "query_quota": 10000},
    ],
}

L3_OVERRIDES: dict[str, Any] = {
    "slug": "commuter-flows",
    "title": "Commuter flows by district",
    "grade": "L3_sensitive",
    "personal_data": "deidentified",
    "deidentification": {"method": "k-anonymity by generalisation", "k": 10,
                         "date": "2026-10-01", "attested_by": "DPO of Provider A"},
    "schema": {"fields": [
        {"name": "district", "type": "string"},
        {"name": "age_band", "type": "string", "personal": True},
        {"name": "trips", "type": "integer"},
    ]},
    "sample": None,
    "delivery": {"data_service_url": "https://data.provider-a.example", "mode": "aggregates",
                 "epsilon_budget": 1.0},
}


def spec(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE_SPEC)
    body.update(copy.deepcopy(overrides))
    return body


def l3_spec(**overrides: Any) -> dict[str, Any]:
    return spec(**{**copy.deepcopy(L3_OVERRIDES), **overrides})


async def create(svc: RunningApp, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    resp = await svc.client.post("/v1/products", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def create_listed(svc: RunningApp, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    product = await create(svc, headers, body)
    resp = await svc.client.post(f"/v1/products/{product['id']}/submit", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "listed"
    return dict(resp.json())


async def audit_actions(svc: RunningApp, product_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(action, details) of the audit events waiting in the catalog's outbox for a product."""
    from shared.outbox import outbox

    async with svc.db.sessionmaker() as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.kind == "audit_event")
                                .order_by(outbox.c.id))).scalars().all()
    return [(p["action"], p["details"]) for p in rows if p["subject"]["id"] == product_id]
