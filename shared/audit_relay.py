"""Delivery of a service's audit events from its outbox to the audit service."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import httpx
from fastapi import FastAPI

from shared.db import Database
from shared.outbox import OutboxMessage, OutboxRelay, check_delivered, running
from shared.runtime import runtime_of
from shared.service_auth import ServiceTokenAuth, TokenSource
from shared.settings import ServiceSettings
from shared.tracing import delivery, runs_by_trace

logger = logging.getLogger("sluice.outbox")


def audit_deliverer(http: httpx.AsyncClient, audit_url: str, token: TokenSource):  # type: ignore[no-untyped-def]
    url = f"{audit_url.rstrip('/')}/v1/events"
    auth = ServiceTokenAuth(token)

    async def deliver(messages: Sequence[OutboxMessage]) -> None:
        # One request per run of events written in the same trace (all of them when tracing is
        # off), so each append is in the trace of the request that caused its events.
        for run in runs_by_trace(messages):
            with delivery(run, "audit") as trace_headers:
                resp = await http.post(url, json={"events": [m.payload for m in run]},
                                       headers=trace_headers, auth=auth)
                check_delivered(resp, "the audit service", run[0] if len(run) == 1 else None)

    return deliver


def token_source_for(app: FastAPI) -> TokenSource | None:
    """This service's own token source, or None when no secret is configured."""
    return runtime_of(app).service_token


@contextlib.asynccontextmanager
async def audit_relay(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: relay this service's audit events while it runs."""
    settings: ServiceSettings = app.state.settings
    db: Database = app.state.db
    token = token_source_for(app)
    if token is None:
        logger.warning(
            "no service client secret (SLUICE_%s_SERVICE_CLIENT_SECRET): audit events stay in "
            "the outbox until one is configured",
            settings.service_name.upper(),
        )
        app.state.audit_relay = None
        yield
        return
    relay = OutboxRelay(
        db.sessionmaker,
        "audit",
        audit_deliverer(app.state.http, settings.audit_url, token),
        poll_interval=settings.outbox_poll_seconds, batch_size=settings.outbox_batch_size,
        max_backoff=settings.outbox_max_backoff_seconds,
    )
    app.state.audit_relay = relay
    async with running([relay]):
        yield
