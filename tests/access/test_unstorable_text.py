"""Text no database can store (NUL, lone UTF-16 surrogates: PostgreSQL refuses both) is the
client's input: a 422 problem, never a 500 (found by fuzzing, tests/e2e/test_schemathesis.py)."""

from __future__ import annotations

import json

import pytest

from tests.access.conftest import bearer
from tests.support import RunningApp


@pytest.mark.parametrize("name", ["a\u0000b", "a\ud9dab", "\udc00x"])
async def test_an_organisation_name_no_database_can_store_is_a_422(
    access: RunningApp, operator_token: str, name: str
) -> None:
    headers = {**bearer(operator_token), "content-type": "application/json"}
    body = json.dumps({"name": name, "roles": ["buyer"]})  # \\u escapes, as a client sends them
    resp = await access.client.post("/v1/organisations", content=body, headers=headers)
    if resp.status_code == 201:  # SQLite stores a NUL; PostgreSQL cannot, and must say so
        assert name == "a\u0000b" and access.db.engine.dialect.name == "sqlite"
        return
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["errors"][0]["location"] == "body"
    # The control: an ordinary name is stored.
    ok = await access.client.post("/v1/organisations", headers=headers,
                                  content=json.dumps({"name": f"Ordinary {len(name)}", "roles": ["buyer"]}))
    assert ok.status_code == 201, ok.text
