"""Delivery of a service's audit events from its outbox to the audit service: the
:data:`AUDIT_RELAY` every producing service lists in ``create_service_app(relays=...)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import httpx
from fastapi import FastAPI

from shared.outbox import OutboxMessage
from shared.relays import HttpDelivery, Outgoing, Relay
from shared.tracing import runs_by_trace


def _append(run: Sequence[OutboxMessage]) -> Outgoing:
    return Outgoing("POST", "/v1/events", {"events": [m.payload for m in run]})


#: One request per run of events written in the same trace (all of them when tracing is off),
#: so each append is in the trace of the request that caused its events.
AUDIT_DELIVERY = HttpDelivery("audit", "audit_url", _append, runs=runs_by_trace)


#: Events the audit relay claims and sends at once (the audit service takes up to 1,000 per
#: append by default), instead of the ``OUTBOX_BATCH_SIZE`` default of 100. Why: a relay run
#: has a fixed cost — its transaction, the claim, one append request, the update — of ~4 ms of
#: CPU here, and a path writing an event per request (the data-token issue, ~1,000 a second)
#: paid it every 100 events: the relay cost 61-72 µs of CPU per event at 100, 27-35 at 500
#: (docs/performance.md, "Access: data-token issue").
AUDIT_BATCH_SIZE = 500


def audit_relay(client: Callable[[FastAPI], httpx.AsyncClient] | None = None, *,
                wake_delay: float = 0.0) -> Relay:
    """The audit relay; ``client``: see ``HttpDelivery.client``; ``wake_delay``: see
    ``Relay.wake_delay`` (orders: events of every order's commit)."""
    return Relay("audit", replace(AUDIT_DELIVERY, client=client), what="audit events",
                 batch_size=AUDIT_BATCH_SIZE, wake_delay=wake_delay)


AUDIT_RELAY = audit_relay()
