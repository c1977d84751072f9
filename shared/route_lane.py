"""What every *route lane* shares: one hot route's plainest requests answered before FastAPI
routes them, with the route's own code.

Why a lane at all: on this 2-core box FastAPI's routing over a service's ~60 routes, its
dependency solving and its request wrappers cost about as much as the work of the hottest
requests (docs/performance.md: the catalog's public product read, the data-token issue, the
free order). A lane is a pure ASGI middleware passed to ``create_service_app(inner_middleware=
...)``, so it sits inside the request-id, metrics and control-character middleware; it takes a
request only when nothing about it needs FastAPI (each lane says what "plainest" means for its
route) and hands everything else on untouched, so the route answers exactly as it always did.

This module holds the parts that must be the same in every lane, so that a fix to one (how a
bearer token is read, which overrides send a request to the route, how a refusal is rendered)
is a fix to all:

* :func:`read_body` reads a small body and hands it on again, as it arrived, when the lane
  declines after all;
* :func:`bearer_token` reads ``Authorization`` exactly as ``fastapi.security.HTTPBearer`` does;
* :class:`LaneRoute` is one route a lane answers: its template (the metrics label) and the
  dependency-override check (a request whose dependencies a test or an operator replaced goes
  to the route);
* :class:`RouteLane` verifies the caller with the app's own ``TokenVerifier`` (same cache, same
  checks) and renders a refusal with the app's own exception handlers, looked up as Starlette's
  ``ExceptionMiddleware`` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.utils import get_dependant
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal
from shared.runtime import runtime_of

Handler = Callable[..., Response | Awaitable[Response]]


class LaneRoute:
    """One route a lane answers: its template (what the metrics middleware reads from
    ``scope["route"]``) and its FastAPI endpoint, whose dependency tree decides which
    ``app.dependency_overrides`` entries send a request to the route instead."""

    def __init__(self, path: str, endpoint: Callable[..., Any] | None = None) -> None:
        self.path = path
        self.endpoint = endpoint
        self._depends_on: dict[int, frozenset[Callable[..., Any]]] = {}

    def overridden(self, app: FastAPI) -> bool:
        """Whether a test or an operator replaced anything the route depends on: the lane would
        not see the replacement, so the route must answer."""
        if not app.dependency_overrides:
            return False
        known = self._depends_on.get(id(app))
        if known is None:
            known = self._depends_on[id(app)] = route_dependencies(app, self.path, self.endpoint)
        return not known.isdisjoint(app.dependency_overrides)


def bearer_token(authorization: bytes | None) -> str | None:
    """The credentials of a ``Bearer`` ``Authorization`` header value, read as
    ``fastapi.security.HTTPBearer`` reads them (scheme case-insensitive, credentials stripped);
    None when there is no usable bearer token (the route then gives its 401)."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    token = credentials.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def route_dependencies(
    app: FastAPI, template: str, endpoint: Callable[..., Any] | None
) -> frozenset[Callable[..., Any]]:
    """Every callable the route depends on (its own tree and the app-wide dependencies): an
    override of any of them in ``app.dependency_overrides`` sends the request to the route."""
    calls: set[Callable[..., Any]] = {d.dependency for d in app.router.dependencies
                                      if d.dependency is not None}
    pending = list(get_dependant(path=template, call=endpoint).dependencies) if endpoint else []
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            calls.add(dependant.call)
        pending.extend(dependant.dependencies)
    return frozenset(calls)


class RouteLane:
    """Base of a lane: what it needs to check a caller, enter a route and answer as it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._handlers: dict[type[Exception], Handler] | None = None

    async def caller_with_role(self, app: FastAPI, route: LaneRoute, token: str,
                               role: str) -> Principal | None:
        """The verified caller holding ``role``, else None (the route decides: its 401, 403 or
        503). Mirrors ``shared.auth._BearerPrincipal`` and ``require_roles(role)``."""
        if route.overridden(app):
            return None
        try:
            principal = await runtime_of(app).verifier.verify(token)
        except Exception:  # 401, 503 ...: the route gives the problem
            return None
        return principal if role in principal.roles else None

    def enter_route(self, scope: Scope, route: LaneRoute, principal: Principal) -> None:
        """Make the scope look as it does inside the route: the metrics label and
        ``request.state.principal``, as ``shared.auth`` sets it."""
        scope["route"] = route
        scope.setdefault("state", {})["principal"] = principal

    async def respond(self, scope: Scope, receive: Receive, send: Send,
                      answer: Callable[[], Awaitable[Response]]) -> None:
        """Send ``answer()``'s response, or the app's own problem for what it raised; an
        exception without a handler reaches the outer error middleware, as the route's would."""
        app: FastAPI = scope["app"]
        try:
            response = await answer()
        except Exception as exc:
            handler = self._handler(app, exc)
            if handler is None:
                raise  # the outer error middleware's 500, as for the route
            rendered = handler(Request(scope, receive), exc)
            response = await rendered if inspect.isawaitable(rendered) else rendered
        await response(scope, receive, send)

    def _handler(self, app: FastAPI, exc: Exception) -> Handler | None:
        """The app's handler for ``exc``, looked up as Starlette's ``ExceptionMiddleware`` does
        (by the exception's classes, most specific first); 500 and ``Exception`` are left to
        the outer error middleware, as ``Starlette.build_middleware_stack`` leaves them."""
        if self._handlers is None:
            self._handlers = {key: handler for key, handler in app.exception_handlers.items()
                              if isinstance(key, type) and key is not Exception}
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        return None


async def read_body(receive: Receive, length: int) -> tuple[bytes | None, Receive]:
    """The request's body (None when it is not the ``length`` bytes announced, or the client
    left), and a ``receive`` that hands the messages read so far on again, in order, before
    reading further: whoever answers sees the request as it arrived."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > length or not message.get("more_body", False):
            break
    replay = list(messages)

    async def again() -> Message:
        return replay.pop(0) if replay else await receive()

    done = messages[-1]
    complete = done["type"] == "http.request" and not done.get("more_body", False) and size == length
    return (b"".join(chunks) if complete else None), again
