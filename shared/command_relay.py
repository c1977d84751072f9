"""Commands to another service, through the outbox.

A command is an HTTP call another service must receive exactly once in effect:
the producer writes it with :func:`shared.outbox.enqueue_command` in the same transaction as
the change that causes it, and the :func:`command_relay` lifespan step delivers
it with this service's token, retrying with backoff until the receiver answers
2xx or 409 (receivers are idempotent; see ``shared.outbox.check_delivered``). A 4xx other
than 401/408/409/429 means the command itself is wrong: it is logged as an error and
retried at the longest backoff, so an operator can fix the receiver without losing it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import httpx
from fastapi import FastAPI

from shared.audit_relay import token_source_for
from shared.db import Database
from shared.outbox import OutboxMessage, OutboxRelay, check_delivered, running
from shared.service_auth import ServiceTokenAuth, TokenSource
from shared.settings import ServiceSettings
from shared.tracing import delivery

logger = logging.getLogger("sluice.outbox")

def command_deliverer(http: httpx.AsyncClient, base_url: str, token: TokenSource):  # type: ignore[no-untyped-def]
    base = base_url.rstrip("/")
    auth = ServiceTokenAuth(token)

    async def deliver(messages: Sequence[OutboxMessage]) -> None:
        # One at a time, in order: a failure stops the batch and later commands wait.
        for m in messages:
            p = m.payload
            with delivery(m) as trace_headers:
                resp = await http.request(
                    p["method"], base + p["path"], json=p.get("body") or {}, auth=auth,
                    headers={"Idempotency-Key": m.message_id, **trace_headers},
                )
                check_delivered(resp, f"{p['method']} {p['path']}", m)

    return deliver


def command_relay(destination: str, base_url_setting: str):  # type: ignore[no-untyped-def]
    """Lifespan step delivering this service's commands for ``destination``,
    whose base URL is the setting named ``base_url_setting`` (e.g. "access_url")."""

    @contextlib.asynccontextmanager
    async def step(app: FastAPI) -> AsyncIterator[None]:
        settings: ServiceSettings = app.state.settings
        db: Database = app.state.db
        token = token_source_for(app)
        if token is None:
            logger.warning("no service client secret: commands to %s wait in the outbox", destination)
            yield
            return
        relay = OutboxRelay(
            db.sessionmaker, destination,
            command_deliverer(app.state.http, getattr(settings, base_url_setting), token),
            batch_size=20, poll_interval=settings.outbox_poll_seconds,
        )
        app.state.relays = {**getattr(app.state, "relays", {}), destination: relay}
        async with running([relay]):
            yield

    return step
