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


def audit_relay(client: Callable[[FastAPI], httpx.AsyncClient] | None = None) -> Relay:
    """The audit relay; ``client``: see ``HttpDelivery.client``."""
    return Relay("audit", replace(AUDIT_DELIVERY, client=client), what="audit events")


AUDIT_RELAY = audit_relay()
