from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.audit.checkpoints import Checkpointer
from services.audit.runtime import AuditState
from tests.conftest import AppFactory
from tests.support import RunningApp, TestKeys


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def service_headers(test_keys: TestKeys) -> dict[str, str]:
    return bearer(test_keys.token(roles=["service"], org="org_platform", sub="svc-orders"))


@pytest.fixture
def regulator_headers(test_keys: TestKeys) -> dict[str, str]:
    return bearer(test_keys.token(roles=["regulator"], org="org_regulator", sub="cli_reg"))


@pytest.fixture
async def audit(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    # Checkpoints are signed explicitly in tests (sign_checkpoint), not by the timer.
    async with service_app("audit", checkpoint_interval_seconds=3600) as svc:
        yield svc


def make_event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime(2026, 11, 27, 10, 0, i % 60, 1000 * i % 1_000_000, tzinfo=UTC).isoformat(),
        "service": "orders",
        "action": "orders.order.paid",
        "actor": {"sub": f"cli_{i % 3}", "org": f"org_{i % 2}", "role": "buyer"},
        "subject": {"type": "order", "id": f"ord_{i}"},
        "outcome": "success",
        "request_id": f"req-{i}",
        "details": {"amount": 100 * i, "currency": "EUR", "note": "grüße ✓", "ratio": i / 7},
    }
    event.update(overrides)
    return event


async def post_events(svc: RunningApp, headers: dict[str, str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = await svc.client.post("/v1/events", json={"events": events}, headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["results"])


async def sign_checkpoint(svc: RunningApp) -> dict[str, Any]:
    cp: Checkpointer = svc.state(AuditState).checkpointer
    await cp.run_once()
    resp = await svc.client.get("/v1/checkpoint")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())
