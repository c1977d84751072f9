"""``POST /v1/entitlements/{id}/tokens`` (a data-access token), answered before FastAPI routes
the request.

Why: the data-token issue is the access service's hottest request, and its target is a ratio
to the RS256 signature it cannot avoid (docs/performance.md, "Access: data-token issue"). On
this 2-core box py-spy showed FastAPI's part of it — routing over the service's ~60 routes,
solving the route's six dependency levels (the app-wide strict-query check, the state, the
bearer scheme and the buyer check, the catalog client, the optional body), its request and
response wrappers — at about a quarter of the server's CPU per token, close to what the
signature costs.

This ASGI middleware sits inside the request-id, metrics and control-character middleware
(so the answer carries an ``X-Request-ID``, is counted under the route's template, and a
control character is still a 422) and takes only the plainest request: ``POST`` on that path,
no query string, no body (``Content-Length: 0`` or none, no ``Transfer-Encoding``), a bearer
token that verifies (the same ``TokenVerifier``, cache and checks as every route) and holds
the buyer role, and no ``app.dependency_overrides`` entry for anything the route depends on.
Everything else — no or bad token, other roles, a body (``expires_in``), a query parameter, a
replaced dependency — goes on to the route untouched: by then the lane has read nothing from
the request and written nothing, so the route answers exactly as it always did.

For what it takes, it runs the route's own code (``routers.entitlements.issue_response``):
the same checks, claims, audit events (refusals too), response bytes and headers. Its errors
are rendered by the app's own exception handlers, looked up as Starlette's
``ExceptionMiddleware`` looks them up (so a refusal is the same problem+json), and an
unexpected error reaches the outer error middleware as the route's would. (Not through an
``ExceptionMiddleware`` of its own: its per-request wrapping cost ~20 µs, 2 % of an issue.)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.utils import get_dependant
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.access.routers.entitlements import issue_data_token, issue_response
from services.access.runtime import AccessState
from shared.auth import Principal
from shared.runtime import runtime_of

PREFIX, SUFFIX = "/v1/entitlements/", "/tokens"
#: The route's template (what the metrics middleware reads from ``scope["route"]``).
TEMPLATE = "/v1/entitlements/{entitlement_id}/tokens"
_BUYER = "buyer"  # the route's caller: shared.auth.Buyer, require_roles("buyer")


class _RouteTemplate:
    path = TEMPLATE


_ROUTE = _RouteTemplate()


def route_dependencies(app: FastAPI) -> frozenset[Callable[..., Any]]:
    """Every callable the route depends on (its own tree and the app-wide dependencies): an
    override of any of them in ``app.dependency_overrides`` sends the request to the route."""
    calls: set[Callable[..., Any]] = {d.dependency for d in app.router.dependencies
                                      if d.dependency is not None}
    pending = list(get_dependant(path=TEMPLATE, call=issue_data_token).dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            calls.add(dependant.call)
        pending.extend(dependant.dependencies)
    return frozenset(calls)


class DataTokenLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._handlers: dict[type[Exception], Callable[..., Response | Awaitable[Response]]] | None = None
        self._depends_on: frozenset[Callable[..., Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] != "POST" or scope.get("query_string")
                or scope.get("root_path") or not path.startswith(PREFIX) or not path.endswith(SUFFIX)):
            await self.app(scope, receive, send)
            return
        entitlement_id = path[len(PREFIX):-len(SUFFIX)]
        principal = (await self._buyer(scope)
                     if entitlement_id and "/" not in entitlement_id else None)
        if principal is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        scope["path_params"] = {"entitlement_id": entitlement_id}
        scope.setdefault("state", {})["principal"] = principal  # request.state, as shared.auth sets it
        await self._issue(scope, receive, send)

    async def _buyer(self, scope: Scope) -> Principal | None:
        """The verified buyer behind a request the lane may answer, else None (the route
        decides). Mirrors shared.auth._BearerPrincipal and require_roles("buyer")."""
        authorization = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None
        if authorization is None or length not in (None, b"0"):
            return None
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        token = credentials.strip()  # as fastapi.security.HTTPBearer reads it
        if scheme.lower() != "bearer" or not token:
            return None
        app: FastAPI = scope["app"]
        if app.dependency_overrides:
            if self._depends_on is None:
                self._depends_on = route_dependencies(app)
            if not self._depends_on.isdisjoint(app.dependency_overrides):
                return None
        try:
            principal = await runtime_of(app).verifier.verify(token)
        except Exception:  # 401, 503 ...: the route gives the problem
            return None
        return principal if _BUYER in principal.roles else None

    async def _issue(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: FastAPI = scope["app"]
        state = runtime_of(app).state(AccessState)
        try:
            response = await issue_response(state, scope["state"]["principal"], state.catalog,
                                            scope["path_params"]["entitlement_id"], None)
        except Exception as exc:
            handler = self._handler(app, exc)
            if handler is None:
                raise  # the outer error middleware's 500, as for the route
            answer = handler(Request(scope, receive), exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler(self, app: FastAPI, exc: Exception) -> Callable[..., Response | Awaitable[Response]] | None:
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
