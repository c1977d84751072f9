"""The access service writes an audit event for each change, in the same transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.access.routers import identity as identity_router
from shared.events import AuditEvent
from shared.outbox import outbox
from tests.access.conftest import OPERATOR_ID, basic, bearer, onboard
from tests.support import RunningApp


async def outbox_events(svc: RunningApp) -> list[AuditEvent]:
    async with svc.db.sessionmaker() as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.kind == "audit_event")
                                .order_by(outbox.c.id))).scalars().all()
    return [AuditEvent.model_validate(r) for r in rows]


async def test_onboarding_writes_organisation_and_client_events(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Evented", ["buyer"])
    events = await outbox_events(access)
    created = [e for e in events if e.action in ("access.organisation.created", "access.client.created")
               and e.actor.sub == OPERATOR_ID]
    assert [e.action for e in created] == ["access.organisation.created", "access.client.created"]
    assert created[1].subject.id == client["client_id"]
    assert created[0].actor.role == "operator"


async def test_token_issue_and_failed_login_are_audited(access: RunningApp, operator_token: str) -> None:
    await access.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                             headers=basic(OPERATOR_ID, "wrong"))
    events = await outbox_events(access)
    refused = [e for e in events if e.action == "access.token.refused"]
    issued = [e for e in events if e.action == "access.token.issued"]
    assert refused and refused[-1].outcome == "failure"
    assert refused[-1].subject.id == OPERATOR_ID
    assert issued and issued[-1].details["roles"] == ["operator"]


async def test_a_refused_change_leaves_no_event(access: RunningApp, operator_token: str) -> None:
    before = len(await outbox_events(access))
    resp = await access.client.post("/v1/organisations/org_missing/suspend", json={"reason": "x"},
                                    headers=bearer(operator_token))
    assert resp.status_code == 404
    assert len(await outbox_events(access)) == before


async def test_events_carry_the_request_id(access: RunningApp, operator_token: str) -> None:
    await access.client.post("/v1/organisations", json={"name": "Traced", "roles": ["buyer"]},
                             headers={**bearer(operator_token), "X-Request-ID": "trace-123"})
    events = await outbox_events(access)
    assert any(e.request_id == "trace-123" and e.action == "access.organisation.created" for e in events)


async def test_a_key_rotation_commits_with_its_event_or_not_at_all(
        access: RunningApp, operator_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation and its audit event are one transaction: an event that cannot be written
    leaves the signing keys as they were (no rotation nobody can account for)."""
    async def listed() -> list[tuple[str, str]]:
        keys = (await access.client.get("/v1/signing-keys", headers=bearer(operator_token))).json()
        return sorted((k["kid"], k["status"]) for k in keys["items"])

    before = await listed()

    async def event_lost(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the audit event could not be written")

    monkeypatch.setattr(identity_router, "audit", event_lost)
    try:
        resp = await access.client.post("/v1/signing-keys/rotate", headers=bearer(operator_token))
        assert resp.status_code == 500
    except RuntimeError:
        pass  # the ASGI test transport re-raises what the app did not handle
    monkeypatch.undo()
    assert await listed() == before
    assert not [e for e in await outbox_events(access) if e.action == "access.signing_key.rotated"]

    resp = await access.client.post("/v1/signing-keys/rotate", headers=bearer(operator_token))
    assert resp.status_code == 201
    [event] = [e for e in await outbox_events(access) if e.action == "access.signing_key.rotated"]
    assert event.subject.id == resp.json()["kid"]
