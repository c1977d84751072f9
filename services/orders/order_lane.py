"""``POST /v1/orders`` and ``POST /v1/quotes`` answered before FastAPI routes the request, for
the plainest requests.

Why: py-spy on the orders benchmark (docs/performance.md, "Orders") put the HTTP stack at about
two thirds of a free order's server CPU on the request path, and FastAPI's own part of it —
routing over the service's routes, solving the route's dependencies (the app-wide strict-query
check, the bearer scheme and the buyer check, the context, the header, the body), its request
wrappers — at ~15 % of the samples: the ratio target needs ~25 % less CPU per order.

Like the access service's data-token lane (services/access/token_lane.py), this ASGI middleware
sits inside the request-id, metrics and control-character middleware (so the answer carries an
``X-Request-ID``, is counted under the route's template, and a control character is still a
422) and takes only the plainest request: ``POST`` on the path, no query string, a
``Content-Type: application/json`` body with a ``Content-Length`` (no ``Transfer-Encoding``)
that validates as the route's body model, for an order one non-blank ``Idempotency-Key``
within the route's limit, a bearer token that verifies (the same verifier, cache and checks as
every route) and holds the buyer role, and no ``app.dependency_overrides`` entry for anything
the route depends on. Everything else goes on to the route untouched: the body the lane read
is handed to it again as it arrived, so the route answers exactly as it always did (its 400,
401, 403, 422).

For what it takes, it runs the route's own code (``routers.orders.place_order_response``,
``routers.quotes.quote_response``): the same checks, rows, events and response bytes and
headers. Its errors are rendered by the app's own exception handlers, looked up as Starlette's
``ExceptionMiddleware`` looks them up (so a refusal is the same problem+json), and an
unexpected error reaches the outer error middleware as the route's would.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.utils import get_dependant
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.orders.context import OrdersContext
from services.orders.routers import orders as order_routes
from services.orders.routers import quotes as quote_routes
from services.orders.schemas import OrderCreate, QuoteCreate
from shared.auth import Principal
from shared.runtime import runtime_of

_BUYER = "buyer"  # the routes' caller: shared.auth.Buyer, require_roles("buyer")
_MAX_KEY = 255  # the order route's Idempotency-Key header: max_length=255
_MAX_BODY = 4096  # a larger body is not the plain request this lane is for


class _Route:
    """What the lane needs of one route: its template (for the metrics middleware, read from
    ``scope["route"]``), endpoint (for its dependencies), body model, whether it takes an
    Idempotency-Key, and the route's own code that answers."""

    def __init__(self, path: str, endpoint: Callable[..., Any], model: type[BaseModel], keyed: bool,
                 answer: Callable[..., Awaitable[Response]]) -> None:
        self.path, self.endpoint, self.model, self.keyed, self.answer = path, endpoint, model, keyed, answer
        self._depends_on: dict[int, frozenset[Callable[..., Any]]] = {}

    def dependencies(self, app: FastAPI) -> frozenset[Callable[..., Any]]:
        """Every callable the route depends on (its own tree and the app-wide dependencies): an
        override of any of them in ``app.dependency_overrides`` sends the request to the route."""
        known = self._depends_on.get(id(app))
        if known is None:
            calls: set[Callable[..., Any]] = {d.dependency for d in app.router.dependencies
                                              if d.dependency is not None}
            pending = list(get_dependant(path=self.path, call=self.endpoint).dependencies)
            while pending:
                dependant = pending.pop()
                if dependant.call is not None:
                    calls.add(dependant.call)
                pending.extend(dependant.dependencies)
            known = self._depends_on[id(app)] = frozenset(calls)
        return known


ROUTES = {
    "/v1/orders": _Route("/v1/orders", order_routes.place_order, OrderCreate, True,
                         lambda ctx, principal, key, body: order_routes.place_order_response(
                             ctx, principal, key, body)),
    "/v1/quotes": _Route("/v1/quotes", quote_routes.create_quote, QuoteCreate, False,
                         lambda ctx, principal, key, body: quote_routes.quote_response(
                             ctx, principal, body)),
}


class OrderLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._handlers: dict[type[Exception], Callable[..., Response | Awaitable[Response]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if (route is None or scope["method"] != "POST" or scope.get("query_string")
                or scope.get("root_path")):
            await self.app(scope, receive, send)
            return
        plain = _plain_headers(scope, route.keyed)
        if plain is None:
            await self.app(scope, receive, send)
            return
        token, key, length = plain
        body, receive = await _read_body(receive, length)
        parsed = _parse(route.model, body) if body is not None else None
        principal = await self._buyer(scope, route, token) if parsed is not None else None
        if parsed is None or principal is None:
            await self.app(scope, receive, send)  # the body is handed on as it arrived
            return
        scope["route"] = route
        scope.setdefault("state", {})["principal"] = principal  # request.state, as shared.auth sets it
        await self._answer(scope, receive, send, route, principal, key, parsed)

    async def _buyer(self, scope: Scope, route: _Route, token: str) -> Principal | None:
        """The verified buyer behind the request, else None (the route decides). Mirrors
        shared.auth._BearerPrincipal and require_roles("buyer")."""
        app: FastAPI = scope["app"]
        if app.dependency_overrides and not route.dependencies(app).isdisjoint(app.dependency_overrides):
            return None
        try:
            principal = await runtime_of(app).verifier.verify(token)
        except Exception:  # 401, 503 ...: the route gives the problem
            return None
        return principal if _BUYER in principal.roles else None

    async def _answer(self, scope: Scope, receive: Receive, send: Send, route: _Route,
                      principal: Principal, key: str, body: BaseModel) -> None:
        app: FastAPI = scope["app"]
        try:
            response = await route.answer(runtime_of(app).state(OrdersContext), principal, key, body)
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
            self._handlers = {k: handler for k, handler in app.exception_handlers.items()
                              if isinstance(k, type) and k is not Exception}
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        return None


def _plain_headers(scope: Scope, keyed: bool) -> tuple[str, str, int] | None:
    """(bearer token, Idempotency-Key or "", Content-Length) of a request the lane may take."""
    authorization = key = length = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = authorization if authorization is not None else value
        elif name == b"idempotency-key":
            key = key if key is not None else value
        elif name == b"content-length":
            length = length if length is not None else value
        elif name == b"content-type":
            content_type = content_type if content_type is not None else value
        elif name == b"transfer-encoding":
            return None
    if authorization is None or length is None or content_type != b"application/json":
        return None
    if not length.isdigit() or int(length) > _MAX_BODY:
        return None
    idempotency_key = ""
    if keyed:
        if key is None:
            return None
        idempotency_key = key.decode("latin-1")  # as Starlette decodes headers
        if len(idempotency_key) > _MAX_KEY or not idempotency_key.strip():
            return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    token = credentials.strip()  # as fastapi.security.HTTPBearer reads it
    if scheme.lower() != "bearer" or not token:
        return None
    return token, idempotency_key, int(length)


async def _read_body(receive: Receive, length: int) -> tuple[bytes | None, Receive]:
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


def _parse(model: type[BaseModel], body: bytes) -> BaseModel | None:
    """The body as the route's model, parsed as FastAPI parses a JSON body (``json.loads``,
    then validation), or None for anything the route should answer itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None
