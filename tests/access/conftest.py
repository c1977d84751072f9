from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import AppFactory
from tests.support import RunningApp

OPERATOR_ID = "operator"
OPERATOR_SECRET = "operator-secret-for-tests"


@pytest.fixture
async def access(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    async with service_app(
        "access",
        bootstrap_client_id=OPERATOR_ID,
        bootstrap_client_secret=OPERATOR_SECRET,
        signing_key_bits=2048,
    ) as svc:
        yield svc


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def get_token(svc: RunningApp, client_id: str, secret: str, **form: Any) -> str:
    resp = await svc.client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **form}, headers=basic(client_id, secret)
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def operator_token(access: RunningApp) -> str:
    return await get_token(access, OPERATOR_ID, OPERATOR_SECRET)


async def onboard(svc: RunningApp, operator_token: str, name: str, roles: list[str]) -> dict[str, Any]:
    """Create an organisation and a client; return the client (with its secret)."""
    org = await svc.client.post("/v1/organisations", json={"name": name, "roles": roles},
                                headers=bearer(operator_token))
    assert org.status_code == 201, org.text
    client = await svc.client.post(f"/v1/organisations/{org.json()['id']}/clients",
                                   json={"name": f"{name} client"}, headers=bearer(operator_token))
    assert client.status_code == 201, client.text
    return dict(client.json())
