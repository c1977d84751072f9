"""Refuse control characters in the request path and query before any route runs.

Why: no id, filter or search term of this platform contains a control character, yet one in a
path segment (``/v1/products/prd_%00x``) reached SQL and failed there (PostgreSQL refuses NUL in
text: a 500), and one in a query value was matched as if meaningful. A 422 that names where it
was is the honest answer, and it is given the same way by every service.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.problems import problem_response

#: C0 controls, DEL and C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def control_character_errors(path: str, query_string: bytes) -> list[dict[str, str]]:
    """Field errors for every place in the path and query holding a control character."""
    errors: list[dict[str, str]] = []
    if _CONTROL.search(path):
        errors.append({"location": "path", "field": "", "type": "control_character",
                       "message": "The path holds a control character; ids never do."})
    # parse_qsl percent-decodes (as UTF-8) what the client percent-encoded.
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if _CONTROL.search(name) or _CONTROL.search(value):
            errors.append({"location": "query", "field": _CONTROL.sub("?", name), "type": "control_character",
                           "message": "The value holds a control character; no parameter accepts one."})
    return errors


class ControlCharacterGuard:
    """ASGI middleware answering 422 problem+json for control characters in path or query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            errors = control_character_errors(scope.get("path", ""), scope.get("query_string", b""))
            if errors:
                where = ", ".join(f"{e['location']}.{e['field']}" if e["field"] else e["location"]
                                  for e in errors[:5])
                response = problem_response(
                    422, "validation-error", "The request is not valid",
                    f"{len(errors)} field(s) failed validation: {where} (a control character). "
                    "See `errors` for each one.",
                    instance=_CONTROL.sub("?", scope.get("path", "")), errors=errors,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
