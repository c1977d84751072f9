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
headers. Token reading, the override check, the caller check, the body's replay and the
rendering of refusals are ``shared.route_lane``'s, shared with the other lanes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.orders.context import OrdersContext
from services.orders.routers import orders as order_routes
from services.orders.routers import quotes as quote_routes
from services.orders.schemas import OrderCreate, QuoteCreate
from shared.route_lane import LaneRoute, RouteLane, bearer_token, read_body
from shared.runtime import runtime_of

_BUYER = "buyer"  # the routes' caller: shared.auth.Buyer, require_roles("buyer")
_MAX_KEY = 255  # the order route's Idempotency-Key header: max_length=255
_MAX_BODY = 4096  # a larger body is not the plain request this lane is for


class _Route(LaneRoute):
    """One route of this lane: besides its template and endpoint, its body model, whether it
    takes an Idempotency-Key, and the route's own code that answers."""

    def __init__(self, path: str, endpoint: Callable[..., Any], model: type[BaseModel], keyed: bool,
                 answer: Callable[..., Awaitable[Response]]) -> None:
        super().__init__(path, endpoint)
        self.model, self.keyed, self.answer = model, keyed, answer


ROUTES = {
    "/v1/orders": _Route("/v1/orders", order_routes.place_order, OrderCreate, True,
                         lambda ctx, principal, key, body: order_routes.place_order_response(
                             ctx, principal, key, body)),
    "/v1/quotes": _Route("/v1/quotes", quote_routes.create_quote, QuoteCreate, False,
                         lambda ctx, principal, key, body: quote_routes.quote_response(
                             ctx, principal, body)),
}


class OrderLane(RouteLane):
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
        body, receive = await read_body(receive, length)
        parsed = _parse(route.model, body) if body is not None else None
        principal = (await self.caller_with_role(scope["app"], route, token, _BUYER)
                     if parsed is not None else None)
        if parsed is None or principal is None:
            await self.app(scope, receive, send)  # the body is handed on as it arrived
            return
        self.enter_route(scope, route, principal)
        context = runtime_of(scope["app"]).state(OrdersContext)
        await self.respond(scope, receive, send, lambda: route.answer(context, principal, key, parsed))


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
    token = bearer_token(authorization)
    if token is None or length is None or content_type != b"application/json":
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
    return token, idempotency_key, int(length)


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
