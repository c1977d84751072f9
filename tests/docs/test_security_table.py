"""docs/security.md's "who may call what" table lists every endpoint of every app."""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("catalog", "orders", "access", "audit", "dataservice")
ROW = re.compile(r"^\| (?P<service>[a-z ]+) \| `(?P<method>[A-Z]+)` \| `(?P<path>[^`]+)` \| (?P<who>.+) \|$")


def table_rows() -> dict[tuple[str, str, str], str]:
    rows: dict[tuple[str, str, str], str] = {}
    for line in (REPO / "docs" / "security.md").read_text().splitlines():
        m = ROW.match(line)
        if m:
            key = (m["service"], m["method"], m["path"])
            assert key not in rows, f"duplicate row {key}"
            rows[key] = m["who"].strip()
    return rows


@cache
def routes(service: str) -> frozenset[tuple[str, str]]:
    app = importlib.import_module(f"services.{service}.app").create_app()
    return frozenset((method.upper(), path)
                     for path, ops in app.openapi()["paths"].items() for method in ops)


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
        if service == "every service":
            holders = [s for s in SERVICES if (method, path) in by_service[s]]
            assert holders == list(SERVICES), f"{method} {path} is not on every service"
        else:
            assert service in by_service, f"unknown service {service!r}"
            assert (method, path) in by_service[service], f"{service} has no {method} {path}"
