"""Every route of every running service, called by every kind of caller, against
docs/security.md: the route list comes from each service's /openapi.json, so a new
endpoint is checked the moment it is served."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.security_table import ROLES, Rule, rule, table_rows, who_may_call

NOT_THERE = "zz-not-there"  # a path parameter naming nothing (an integer one gets 1)


@dataclass(frozen=True)
class Callers:
    platform: dict[str, str]  # role → a platform token holding only that role
    data_access: str  # a data-access token for the cluster's data service


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    url: str
    who: str | None


def routes(service_urls: dict[str, str]) -> Iterator[Route]:
    rows = table_rows()
    for service, base in service_urls.items():
        spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                url = base + fill(path, op)
                yield Route(service, method.upper(), path, url, who_may_call(rows, service, method.upper(), path))


def fill(path: str, op: dict[str, Any]) -> str:
    kinds = {p["name"]: p.get("schema", {}).get("type") for p in op.get("parameters", []) if p["in"] == "path"}
    return re.sub(r"\{(\w+)\}", lambda m: "1" if kinds.get(m[1]) == "integer" else NOT_THERE, path)


def call(http: httpx.Client, route: Route, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if route.method in ("POST", "PUT", "PATCH") else None
    return http.request(route.method, route.url, headers=headers, json=body).status_code


def violations(http: httpx.Client, route: Route, callers: Callers) -> list[str]:
    """What ``route`` answers that docs/security.md does not say, each with what to change."""
    where = f"{route.service} {route.method} {route.path}"
    if route.who is None:
        return [f"{where}: not in docs/security.md; add the row `| {route.service} | `{route.method}` | "
                f"`{route.path}` | <roles that may call it> |`"]
    try:
        admits: Rule = rule(route.service, route.who)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    if admits.public:
        return []
    found: list[str] = []

    def expect(token: str | None, caller: str, wanted: str, role: str | None = None) -> None:
        status = call(http, route, token)
        if not ok_status(status, wanted):
            advice = (f" — refuse role {role} with 403, or, if {role} may call it, add {role} to this "
                      "row of docs/security.md") if role else ""
            found.append(f"{where}: {caller} got {status}, expected {wanted} "
                         f"(docs/security.md: {route.who!r}){advice}")

    own_kind = callers.data_access if admits.data_access else callers.platform[control_role(admits)]
    other_kind = callers.platform["buyer"] if admits.data_access else callers.data_access
    kind = "data-access" if admits.data_access else "platform"
    expect(None, "a call without a token", "401")
    expect(other_kind, f"a {'platform' if admits.data_access else 'data-access'} token", "401")
    expect(own_kind, f"the control (a {kind} token{'' if admits.data_access else ' of role ' + control_role(admits)})",
           "neither 401 nor 403")
    if admits.roles is not None:
        for role in ROLES:
            if role not in admits.roles:
                expect(callers.platform[role], f"a {role} token", "403", role)
    return found


def control_role(admits: Rule) -> str:
    return sorted(admits.roles)[0] if admits.roles else "buyer"


def ok_status(status: int, wanted: str) -> bool:
    return status not in (401, 403) if wanted == "neither 401 nor 403" else status == int(wanted)

