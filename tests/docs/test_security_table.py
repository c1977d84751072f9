"""docs/security.md's "who may call what" table lists every endpoint of every app."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import pytest

from tests.security_table import EVERY_SERVICE, rule, table_rows, who_may_call

SERVICES = ("catalog", "orders", "access", "audit", "dataservice")


@cache
def openapi(service: str) -> dict[str, Any]:
    app = importlib.import_module(f"services.{service}.app").create_app()
    return app.openapi()


def routes(service: str) -> frozenset[tuple[str, str]]:
    return frozenset((method.upper(), path) for path, ops in openapi(service)["paths"].items() for method in ops)


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_of_the_app_is_in_the_table(service: str) -> None:
    rows = table_rows()
    missing = [f"{m} {p}" for m, p in sorted(routes(service))
               if (service, m, p) not in rows and ("every service", m, p) not in rows]
    assert not missing, f"add these {service} endpoints to docs/security.md: {missing}"


def test_every_row_names_a_real_route_and_who_may_call_it() -> None:
    by_service = {s: routes(s) for s in SERVICES}
    for (service, method, path), who in table_rows().items():
        assert who, f"{method} {path}: say who may call it"
        if service == EVERY_SERVICE:
            holders = [s for s in SERVICES if (method, path) in by_service[s]]
            assert holders == list(SERVICES), f"{method} {path} is not on every service"
        else:
            assert service in by_service, f"unknown service {service!r}"
            assert (method, path) in by_service[service], f"{service} has no {method} {path}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_row_says_who_in_words_the_route_tests_read_and_agrees_with_the_openapi(service: str) -> None:
    """tests/e2e/test_platform_boot.py checks every route against its row; the row must name
    its roles, and say "no token" exactly where the OpenAPI declares no bearer security."""
    rows, wrong = table_rows(), []
    for path, ops in openapi(service)["paths"].items():
        for method, op in ops.items():
            who = who_may_call(rows, service, method.upper(), path)
            if who is None:
                continue  # test_every_route_of_the_app_is_in_the_table says what to add
            try:
                admits = rule(service, who)
            except ValueError as exc:
                wrong.append(f"{method.upper()} {path}: {exc}")
                continue
            if admits.public == bool(op.get("security")):
                wrong.append(f"{method.upper()} {path}: the OpenAPI says "
                             f"{'a bearer token is' if op.get('security') else 'no token is'} needed, "
                             f"docs/security.md says {who!r}")
    assert not wrong, "fix these rows of docs/security.md:\n" + "\n".join(wrong)
