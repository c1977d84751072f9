"""shared.relays: the one HTTP deliverer's ``on_delivered`` hook and refusals, and the registry
the app starts (one warning without a client secret)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

from shared.db import Database
from shared.outbox import OutboxMessage, OutboxRelay, enqueue, outbox
from shared.relays import Delivered, HttpDelivery, Outgoing, coalesced
from shared.runtime import runtime_of
from tests.conftest import AppFactory, DatabaseFactory


def _post_path(run: Sequence[OutboxMessage]) -> Outgoing:
    [m] = run
    return Outgoing("POST", str(m.payload["path"]), {"n": m.payload["n"]})


DELIVERY = HttpDelivery("receiver", "access_url", _post_path)


class Receiver:
    """Answers each path with the status set for it, and keeps what it was sent."""

    def __init__(self, answers: dict[str, int]) -> None:
        self.answers = answers
        self.sent: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer svc-token"
        self.sent.append(request.url.path)
        return httpx.Response(self.answers[request.url.path], json={"path": request.url.path})


async def _token() -> str:
    return "svc-token"


async def _enqueue(db: Database, *paths: str) -> None:
    async with db.sessionmaker() as s, s.begin():
        for n, path in enumerate(paths):
            await enqueue(s, kind="cmd", destination="receiver", message_id=f"m{n}{path}",
                          payload={"path": path, "n": n})


async def _states(db: Database) -> dict[str, str]:
    async with db.sessionmaker() as s:
        rows = (await s.execute(outbox.select().order_by(outbox.c.id))).mappings().all()
    return {r["payload"]["path"]: "dead" if r["dead_at"] else "delivered" if r["delivered_at"] else "pending"
            for r in rows}


async def test_on_delivered_gets_each_message_the_receiver_took_once_and_no_refused_one(
        database_url: DatabaseFactory) -> None:
    db = Database(database_url("catalog"))
    calls: list[list[tuple[str, int]]] = []

    async def on_delivered(delivered: Sequence[Delivered]) -> None:
        calls.append([(str(d.message.payload["path"]), d.response.status_code) for d in delivered])

    receiver = Receiver({"/created": 201, "/known": 409, "/down": 503, "/wrong": 422})
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
            relay = OutboxRelay(db.sessionmaker, "receiver",
                                DELIVERY.deliverer(http, "http://receiver", _token, on_delivered),
                                base_backoff=0.0)
            await _enqueue(db, "/created", "/known")
            assert await relay.run_once() == 2
            assert calls == [[("/created", 201), ("/known", 409)]]  # one call, each message once

            calls.clear()
            await _enqueue(db, "/first", "/down", "/after")
            receiver.answers.update({"/first": 200, "/after": 201})
            assert await relay.run_once() == 1  # stopped at /down: /first is done, not sent again
            assert calls == [[("/first", 200)]]
            states = await _states(db)
            assert (states["/first"], states["/down"], states["/after"]) == ("delivered", "pending", "pending")
            assert receiver.sent[-2:] == ["/first", "/down"]

            calls.clear()
            receiver.answers["/down"] = 400  # now refused for good: dead-lettered, no hook
            assert await relay.run_once() == 0
            assert calls == [] and (await _states(db))["/down"] == "dead"
            assert await relay.run_once() == 1
            assert calls == [[("/after", 201)]]
            assert receiver.sent.count("/first") == 1 and receiver.sent.count("/after") == 1

            calls.clear()
            await _enqueue(db, "/wrong")
            assert await relay.run_once() == 0
            assert calls == [] and (await _states(db))["/wrong"] == "dead"
    finally:
        await db.dispose()


async def test_without_a_client_secret_the_registry_warns_once_and_the_messages_wait(
        service_app: AppFactory) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.WARNING)
    logging.getLogger("sluice.outbox").addHandler(handler)
    try:
        async with service_app("catalog") as svc:  # no SLUICE_CATALOG_SERVICE_CLIENT_SECRET
            registry = runtime_of(svc.app).relays
            assert registry.waiting == ["audit", "access"]
            assert registry.get("audit") is None and registry.get("access") is None
            resp = await svc.client.get("/metrics")
            assert 'sluice_outbox_dead_letters{destination="access",service="catalog"} 0.0' in resp.text
    finally:
        logging.getLogger("sluice.outbox").removeHandler(handler)
    [warning] = [r for r in records if "SERVICE_CLIENT_SECRET" in r.getMessage()]
    message = warning.getMessage()
    assert "SLUICE_CATALOG_SERVICE_CLIENT_SECRET" in message
    assert "audit events (to audit)" in message and "commands to access (to access)" in message


async def test_with_a_token_the_registry_runs_each_declared_relay_and_stops_them(
        service_app: AppFactory) -> None:
    async with service_app("catalog", service_client_secret="secret") as svc:
        registry = runtime_of(svc.app).relays
        assert registry.waiting == []
        running = [registry.get("audit"), registry.get("access")]
        assert all(r is not None for r in running)
    assert registry.get("audit") is None  # stopped and forgotten with the app


async def test_a_coalesced_wake_fires_once_after_the_delay_for_all_the_calls_meanwhile() -> None:
    woken: list[float] = []
    loop = asyncio.get_running_loop()
    wake = coalesced(lambda: woken.append(loop.time()), 0.05)
    start = loop.time()
    for _ in range(10):
        wake()
    await asyncio.sleep(0.02)
    assert woken == []
    await asyncio.sleep(0.08)
    assert len(woken) == 1 and woken[0] - start >= 0.045
    wake()  # after it fired, the next call schedules again
    await asyncio.sleep(0.1)
    assert len(woken) == 2
