"""Quota and epsilon counters, usage reports through the outbox, audit events, relay."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import select

from services.dataservice.models import entitlement_usage, outbox, privacy_budgets, privacy_charges
from services.dataservice.usage import USAGE_DELIVERY
from shared.outbox import OutboxRelay
from tests.dataservice.conftest import HEALTH, SMALL_BUDGET, TRANSIT, TokenFactory, query
from tests.support import RunningApp

COUNT = {"select": ["district"], "aggregates": [{"fn": "count"}], "group_by": ["district"]}


async def _outbox(ds: RunningApp, destination: str) -> list[dict[str, Any]]:
    async with ds.db.sessionmaker() as s:
        rows = (await s.execute(select(outbox).where(outbox.c.destination == destination)
                                .order_by(outbox.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def _counters(ds: RunningApp, ent: str) -> tuple[int, int]:
    async with ds.db.sessionmaker() as s:
        row = (await s.execute(select(entitlement_usage.c.queries_used, entitlement_usage.c.epsilon_used_micro)
                               .where(entitlement_usage.c.entitlement_id == ent))).one()
    return int(row[0]), int(row[1])


async def test_each_query_enqueues_a_usage_record_for_access(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(ent="ent_u1", jti="jti-u1"), {**COUNT, "epsilon": 0.1})
    assert resp.status_code == 200, resp.text
    [msg] = await _outbox(ds, "access")
    record = msg["payload"]
    assert msg["kind"] == "usage" and msg["message_id"] == record["usage_id"]
    assert set(record) == {"usage_id", "entitlement_id", "jti", "product_id", "rows_returned",
                           "suppressed_groups", "epsilon_spent", "occurred_at"}
    assert record["entitlement_id"] == "ent_u1" and record["jti"] == "jti-u1"
    assert record["product_id"] == HEALTH and record["epsilon_spent"] == 0.1
    assert record["rows_returned"] == len(resp.json()["rows"])
    assert record["suppressed_groups"] == resp.json()["suppressed_groups"]


async def test_each_query_is_an_audit_event(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(ent="ent_a1", purpose="planning")
    assert (await query(ds, token, COUNT)).status_code == 200
    assert (await query(ds, token, {"select": ["cost_eur"]})).status_code == 422
    events = [m["payload"] for m in await _outbox(ds, "audit")]
    assert [e["action"] for e in events] == ["dataservice.query.executed", "dataservice.query.refused"]
    done, refused = events
    assert done["actor"] == {"sub": "cli_buyer", "org": "org_buyer", "role": "buyer"}
    assert done["subject"] == {"type": "entitlement", "id": "ent_a1"}
    assert done["details"]["product_id"] == HEALTH and done["details"]["purpose"] == "planning"
    assert done["details"]["rows"] + done["details"]["suppressed_groups"] == 9  # declared districts
    assert refused["outcome"] == "denied" and refused["details"]["rule"] == "aggregates-only"


async def test_each_charge_is_in_the_audit_event_and_the_charge_ledger(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_ch", org="org_ch", jti="jti-ch")
    assert (await query(ds, token, {**COUNT, "epsilon": 0.25})).status_code == 200
    [event] = [m["payload"] for m in await _outbox(ds, "audit")]
    charge = event["details"]["charge"]
    assert charge == {"product": HEALTH, "period": charge["period"], "epsilon": 0.25, "delta": 0.0,
                      "product_epsilon_spent": 0.25, "product_epsilon_total": 100.0}
    async with ds.db.sessionmaker() as s:
        [row] = (await s.execute(select(privacy_charges))).mappings().all()
    assert (row["entitlement_id"], row["organisation_id"], row["jti"], row["epsilon_micro"]) == \
        ("ent_ch", "org_ch", "jti-ch", 250_000)
    assert row["usage_id"] == event["details"]["usage_id"]


async def test_a_query_refused_for_its_budget_leaves_no_charge(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(ent="ent_poor", limits={"epsilon_budget": 0.05})
    refused = await query(ds, token, {**COUNT, "epsilon": 0.1})
    assert refused.status_code == 403 and refused.json()["budget"] == "entitlement"
    async with ds.db.sessionmaker() as s:
        assert (await s.execute(select(privacy_charges))).first() is None
        assert (await s.execute(select(privacy_budgets))).first() is None
    assert await _outbox(ds, "access") == []


async def test_refused_queries_are_not_charged_or_reported(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(ent="ent_r1")
    assert (await query(ds, token, {"select": ["cost_eur"]})).status_code == 422
    assert await _outbox(ds, "access") == []


async def test_exhausted_quota_is_refused_with_what_to_do(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(TRANSIT, ent="ent_q1", limits={"query_quota": 2})
    first = await query(ds, token, {"select": ["trips"], "limit": 1})
    assert first.json()["queries_remaining"] == 1
    assert (await query(ds, token, {"select": ["trips"], "limit": 1})).status_code == 200
    third = await query(ds, token, {"select": ["trips"], "limit": 1})
    assert third.status_code == 403
    problem = third.json()
    assert problem["type"].endswith("/quota-exhausted") and "Buy more" in problem["detail"]
    assert await _counters(ds, "ent_q1") == (2, 0)


async def test_fifty_concurrent_queries_never_exceed_the_quota(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(TRANSIT, ent="ent_c1", limits={"query_quota": 10})
    results = await asyncio.gather(*(query(ds, token, {"select": ["trips"], "limit": 1}) for _ in range(50)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 10 and codes.count(403) == 40, codes
    assert await _counters(ds, "ent_c1") == (10, 0)
    assert len(await _outbox(ds, "access")) == 10


async def test_fifty_concurrent_noisy_queries_never_exceed_the_epsilon_budget(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_c2", limits={"epsilon_budget": 1.0, "query_quota": None})
    body = {**COUNT, "epsilon": 0.1}
    results = await asyncio.gather(*(query(ds, token, body) for _ in range(50)))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 10, sorted(r.status_code for r in results)
    assert all(r.json()["type"].endswith("/privacy-budget-exhausted") for r in results if r.status_code != 200)
    assert await _counters(ds, "ent_c2") == (10, 1_000_000)
    assert min(r.json()["epsilon_remaining"] for r in ok) == 0.0


async def test_fifty_concurrent_queries_of_many_buyers_never_exceed_the_product_budget(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    # Fifty entitlements of different organisations, each with room to spare: only the
    # product's shared budget (epsilon 1.0 per quarter) stops them, after exactly ten.
    tokens = [data_token(SMALL_BUDGET, ent=f"ent_m{i}", org=f"org_m{i}") for i in range(50)]
    body = {**COUNT, "epsilon": 0.1}
    results = await asyncio.gather(*(query(ds, t, body) for t in tokens))
    assert sorted(r.status_code for r in results).count(200) == 10, sorted(r.status_code for r in results)
    refused = [r.json() for r in results if r.status_code != 200]
    assert all(p["budget"] == "product" and p["status"] == 429 for p in refused)
    async with ds.db.sessionmaker() as s:
        [row] = (await s.execute(select(privacy_budgets))).mappings().all()
        charges = (await s.execute(select(privacy_charges))).all()
    assert (row["epsilon_spent_micro"], row["answers"], len(charges)) == (1_000_000, 10, 10)


async def test_usage_relay_posts_each_record_and_counts_duplicates_as_delivered(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_relay")
    for _ in range(3):
        assert (await query(ds, token, COUNT)).status_code == 200
    received: list[dict[str, Any]] = []

    def access(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/usage"
        assert request.headers["authorization"] == "Bearer svc-token"
        body = json.loads(request.content)
        received.append(body)
        return httpx.Response(409 if len(received) == 2 else 201, json={})

    async def svc_token() -> str:
        return "svc-token"

    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        relay = OutboxRelay(ds.db.sessionmaker, "access",
                            USAGE_DELIVERY.deliverer(http, "http://access.test", svc_token))
        assert await relay.run_once() == 3
        assert await relay.run_once() == 0
    assert [r["entitlement_id"] for r in received] == ["ent_relay"] * 3
    assert all(m["delivered_at"] is not None for m in await _outbox(ds, "access"))


async def test_usage_stays_in_the_outbox_while_access_is_down(ds: RunningApp, data_token: TokenFactory) -> None:
    assert (await query(ds, data_token(ent="ent_down"), COUNT)).status_code == 200

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "maintenance"})

    async def svc_token() -> str:
        return "svc-token"

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        relay = OutboxRelay(ds.db.sessionmaker, "access",
                            USAGE_DELIVERY.deliverer(http, "http://access.test", svc_token))
        assert await relay.run_once() == 0
    [msg] = await _outbox(ds, "access")
    assert msg["delivered_at"] is None and msg["attempts"] == 1 and "503" in msg["last_error"]
