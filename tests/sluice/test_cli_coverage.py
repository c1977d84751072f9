"""Every endpoint a person uses has a CLI command, and every command names a real endpoint.

Each command declares the endpoint(s) it calls (``calls=`` in ``sluice.cli.core.command``);
endpoints only other services call are listed below with the reason. A new endpoint
fails this test until it gets a command or a line here.
"""

from __future__ import annotations

import importlib
from functools import cache

import sluice.cli  # noqa: F401 - registers every command
from sluice.cli.core import REGISTRY

SERVICES = ("catalog", "orders", "access", "audit", "dataservice")

#: (service, METHOD, path) → why no person calls it from the CLI.
NOT_FOR_PEOPLE = {
    ("catalog", "GET", "/internal/v1/products/{product_id}"): "internal: orders and access ask it",
    ("catalog", "GET", "/internal/v1/products/{product_id}/versions/{version}"): "internal: orders",
    ("orders", "POST", "/v1/webhooks/stripe"): "Stripe calls it, signed",
    ("access", "POST", "/v1/entitlements"): "orders' fulfilment relay",
    ("access", "POST", "/v1/entitlements/batch"): "orders' fulfilment relay (a batch of grants)",
    ("access", "POST", "/v1/usage"): "data services report answered queries",
    ("access", "POST", "/v1/entitlements/by-order/{order_id}/changes"): "orders' billing changes (outbox)",
    ("access", "GET", "/v1/usage/summary"): "orders bills metered periods from it; people read usage",
    ("catalog", "PUT", "/v1/products/{product_id}/privacy-budget"): "data services report their budget",
    ("audit", "POST", "/v1/events"): "services append events through their outboxes",
    ("every", "GET", "/healthz"): "liveness probe; `sluice status` uses /readyz",
    ("every", "GET", "/metrics"): "Prometheus scrapes it",
    ("every", "GET", "/v1/outbox/dead-letters"): "operators, with curl (docs/operations.md, Outbox backlog)",
    ("every", "POST", "/v1/outbox/dead-letters/{message_id}/retry"): "operators, with curl (as above)",
}


@cache
def routes(service: str) -> frozenset[tuple[str, str]]:
    app = importlib.import_module(f"services.{service}.app").create_app()
    return frozenset((m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops)


def declared() -> set[tuple[str, str, str]]:
    out = set()
    for _name, calls in REGISTRY:
        for call in calls:
            service, method, path = call.split(" ", 2)
            out.add((service, method, path))
    return out


def covers(service: str, method: str, path: str, known: set[tuple[str, str, str]]) -> bool:
    return (service, method, path) in known or ("every", method, path) in known


def test_every_endpoint_has_a_command_or_a_reason_not_to() -> None:
    known = declared() | set(NOT_FOR_PEOPLE)
    missing = [f"{s} {m} {p}" for s in SERVICES for m, p in sorted(routes(s))
               if not covers(s, m, p, known)]
    assert not missing, ("add a command (calls=...) for these endpoints, or list them in "
                         f"NOT_FOR_PEOPLE with the reason: {missing}")


def test_every_command_calls_a_real_endpoint() -> None:
    stale = []
    for service, method, path in declared() | set(NOT_FOR_PEOPLE):
        holders = SERVICES if service == "every" else (service,)
        if service not in (*SERVICES, "every") or any((method, path) not in routes(s) for s in holders):
            stale.append(f"{service} {method} {path}")
    assert not stale, f"these calls= name no endpoint: {stale}"
