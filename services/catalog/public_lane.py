"""``GET /v1/products/{id}`` for the public, answered before FastAPI routes the request.

Why: a public product read is the catalog's hottest request, and its answer is stored bytes
(the public-view cache, or one prepared-statement read of the stored version document,
``published.py``). Measured in-process on this 2-core box, FastAPI's routing over the
service's ~60 routes and its dependency solving (the app-wide strict-query check, the bearer
scheme, the principal) cost more than the read itself: a cache hit took ~3 × the CPU of a
bare FastAPI endpoint returning the same JSON (docs/performance.md, "Catalog: product GET").

This ASGI middleware sits inside the request-id, metrics and control-character middleware
(so the answer carries an ``X-Request-ID``, is counted under the route's template, and a
control character is still a 422) and answers only the plainest case: ``GET``, no query
string, a bearer token that verifies (the same ``TokenVerifier``, cache and checks as every
route), a caller who is not a regulator and does not own the product, no JSON-LD wanted, no
``app.dependency_overrides`` entry for anything the route depends on (``LaneRoute.overridden``,
as in the other lanes: a replaced principal would otherwise be skipped), and a published
product. Everything else — no or bad token, owners, regulators, drafts, unknown
products, JSON-LD, any query parameter, a database error — goes on to the route, which
answers exactly as before (its problems, its 422 for unknown parameters); so does a read
that fails here. The bytes are the route's bytes: the same cache, filled under the same
generation ticket, and the same stored-document splice.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalog import published
from services.catalog.lifecycle import is_regulator
from services.catalog.routers.products import get_product
from services.catalog.runtime import CatalogState
from shared.route_lane import LaneRoute, bearer_token
from shared.runtime import runtime_of

logger = logging.getLogger("sluice.catalog")

PREFIX = "/v1/products/"
_JSON_LD = b"application/ld+json"


_ROUTE = LaneRoute("/v1/products/{product_id}", get_product)


class PublicProductLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string")
                or not scope["path"].startswith(PREFIX)):
            await self.app(scope, receive, send)
            return
        product_id = scope["path"][len(PREFIX):]
        body = await self._public_body(scope, product_id) if product_id and "/" not in product_id else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        # The headers starlette's Response(body, media_type="application/json") sends.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()),
                                (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _public_body(self, scope: Scope, product_id: str) -> bytes | None:
        """The public JSON when the caller gets it as the public does, else None (the route
        decides). Mirrors routers/products.get_product's public branch."""
        authorization = accept = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"accept" and accept is None:
                accept = value
        token = bearer_token(authorization)
        if token is None or (accept is not None and _JSON_LD in accept):
            return None
        app = scope["app"]
        if _ROUTE.overridden(app):  # a replaced dependency (the principal's too) is the route's
            return None
        runtime = runtime_of(app)
        try:
            principal = await runtime.verifier.verify(token)
        except Exception:  # 401, 503 ...: the route gives the problem
            return None
        if is_regulator(principal):
            return None
        cache = runtime.state(CatalogState).public_views
        ticket = cache.ticket()  # before reading: a transition committed meanwhile wins
        hit = cache.get(product_id) if cache.enabled else None
        if hit is not None:
            owner = "provider" in principal.roles and principal.org_id == hit[0]
            return None if owner else hit[1]
        try:
            stored = await published.public_json(runtime.db, principal, product_id)
        except Exception:  # the route reads again and answers with the problem
            logger.debug("public lane read of %s failed; the route answers", product_id, exc_info=True)
            return None
        if stored is None:
            return None
        cache.put(product_id, *stored, ticket=ticket)
        return stored[1]
