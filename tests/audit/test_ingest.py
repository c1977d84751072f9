"""POST /v1/events: roles, validation, idempotency, one gap-free order."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from services.audit.models import events, tree_nodes
from tests.audit.conftest import bearer, make_event, post_events
from tests.conftest import AppFactory
from tests.support import RunningApp, TestKeys, run_app


async def stored_seqs(svc: RunningApp) -> list[int]:
    async with svc.db.sessionmaker() as s:
        return list(await s.scalars(select(events.c.seq).order_by(events.c.seq)))


async def test_batch_gets_consecutive_seqs_from_zero(audit: RunningApp, service_headers) -> None:
    first = await post_events(audit, service_headers, [make_event(i) for i in range(3)])
    second = await post_events(audit, service_headers, [make_event(i) for i in range(3, 5)])
    assert [r["seq"] for r in first + second] == [0, 1, 2, 3, 4]
    assert not any(r["duplicate"] for r in first + second)


async def test_resent_event_returns_its_seq_and_adds_no_leaf(audit: RunningApp, service_headers) -> None:
    batch = [make_event(i) for i in range(4)]
    first = await post_events(audit, service_headers, batch)
    again = await post_events(audit, service_headers, [batch[2], make_event(9), batch[0]])
    assert [(r["seq"], r["duplicate"]) for r in again] == [(2, True), (4, False), (0, True)]
    assert [r["event_id"] for r in again] == [batch[2]["event_id"], again[1]["event_id"], batch[0]["event_id"]]
    assert first[2]["seq"] == 2
    assert await stored_seqs(audit) == [0, 1, 2, 3, 4]


async def test_same_event_twice_in_one_batch_is_one_leaf(audit: RunningApp, service_headers) -> None:
    e = make_event(1)
    res = await post_events(audit, service_headers, [e, e])
    assert [(r["seq"], r["duplicate"]) for r in res] == [(0, False), (0, True)]
    assert await stored_seqs(audit) == [0]


async def test_received_at_is_stored(audit: RunningApp, service_headers, regulator_headers) -> None:
    await post_events(audit, service_headers, [make_event(1)])
    body = (await audit.client.get("/v1/events/0", headers=regulator_headers)).json()
    assert body["event"]["received_at"] > body["event"]["occurred_at"]


async def test_only_the_service_role_may_append(audit: RunningApp, test_keys: TestKeys) -> None:
    body = {"events": [make_event(1)]}
    assert (await audit.client.post("/v1/events", json=body)).status_code == 401
    for role in ("regulator", "operator", "provider"):
        resp = await audit.client.post("/v1/events", json=body, headers=bearer(test_keys.token(roles=[role])))
        assert resp.status_code == 403, role
        assert resp.headers["content-type"] == "application/problem+json"


async def test_invalid_event_is_a_field_level_problem(audit: RunningApp, service_headers) -> None:
    resp = await audit.client.post("/v1/events", json={"events": [make_event(1, action="Not An Action")]},
                                   headers=service_headers)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "events.0.action"
    naive = make_event(1, occurred_at="2026-11-27T10:00:00")
    resp = await audit.client.post("/v1/events", json={"events": [naive]}, headers=service_headers)
    assert resp.status_code == 422


async def test_values_without_canonical_json_are_refused(audit: RunningApp, service_headers) -> None:
    resp = await audit.client.post("/v1/events", json={"events": [make_event(1, details={"n": 2**60})]},
                                   headers=service_headers)
    assert resp.status_code == 422
    assert resp.json()["rule"] == "canonical-json"
    resp = await audit.client.post("/v1/events", json={"events": [make_event(1, request_id="a\u0000b")]},
                                   headers=service_headers)
    assert resp.status_code == 422
    assert resp.json()["rule"] == "no-nul-characters"
    assert await stored_seqs(audit) == []


async def test_oversized_batch_is_refused(service_app: AppFactory, service_headers) -> None:
    async with service_app("audit", max_batch_events=5) as svc:
        resp = await svc.client.post("/v1/events", json={"events": [make_event(i) for i in range(6)]},
                                     headers=service_headers)
        assert resp.status_code == 422
        assert resp.json()["rule"] == "max-batch-events"


async def test_concurrent_writers_get_one_gap_free_order(audit: RunningApp, test_keys: TestKeys,
                                                         service_headers) -> None:
    """Two app instances on one database (two connection pools: two writers as
    far as the database is concerned) append 40 batches at once, with
    re-deliveries mixed in."""
    async with run_app("audit", audit.database_url, keys=test_keys, checkpoint_interval_seconds=0.05) as other:
        batches = [[make_event(10 * k + i) for i in range(10)] for k in range(40)]
        jobs = [post_events(audit if k % 2 else other, service_headers, b) for k, b in enumerate(batches)]
        results = await asyncio.gather(*jobs)
        resend = [batches[k][:3] for k in range(0, 40, 5)]
        again = await asyncio.gather(*(post_events(audit, service_headers, r) for r in resend))
    assert sorted(r["seq"] for res in results for r in res) == list(range(400))
    by_id = {r["event_id"]: r["seq"] for res in results for r in res}
    assert len(by_id) == 400
    for res in again:
        assert all(r["duplicate"] and by_id[r["event_id"]] == r["seq"] for r in res)
    assert await stored_seqs(audit) == list(range(400))
    async with audit.db.sessionmaker() as s:
        # 400 leaves: level 4 holds 25 full subtrees and level 8 one.
        assert await s.scalar(select(func.count()).select_from(tree_nodes)) == 26
