"""The access service writes an audit event for each change, in the same transaction."""

from __future__ import annotations

from sqlalchemy import select

from shared.events import AuditEvent
from shared.outbox import outbox
from tests.access.conftest import OPERATOR_ID, basic, bearer, onboard
from tests.support import RunningApp


async def outbox_events(svc: RunningApp) -> list[AuditEvent]:
    async with svc.app.state.db.sessionmaker() as s:
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
