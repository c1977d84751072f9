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
the same checks, claims, audit events (refusals too), response bytes and headers. Token
reading, the override check, the caller check and the rendering of refusals are
``shared.route_lane``'s, shared with the other lanes. (Refusals are rendered by looking the
app's handler up, not through an ``ExceptionMiddleware`` of the lane's own: its per-request
wrapping cost ~20 µs, 2 % of an issue.)
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from services.access.routers.entitlements import issue_data_token, issue_response
from services.access.runtime import AccessState
from shared.auth import Principal
from shared.route_lane import LaneRoute, RouteLane, bearer_token
from shared.runtime import runtime_of

PREFIX, SUFFIX = "/v1/entitlements/", "/tokens"
_BUYER = "buyer"  # the route's caller: shared.auth.Buyer, require_roles("buyer")


_ROUTE = LaneRoute("/v1/entitlements/{entitlement_id}/tokens", issue_data_token)


class DataTokenLane(RouteLane):
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
        self.enter_route(scope, _ROUTE, principal)
        scope["path_params"] = {"entitlement_id": entitlement_id}
        state = runtime_of(scope["app"]).state(AccessState)
        await self.respond(scope, receive, send, lambda: issue_response(
            state, principal, state.catalog, entitlement_id, None))

    async def _buyer(self, scope: Scope) -> Principal | None:
        """The verified buyer behind a request without a body, else None (the route decides)."""
        authorization = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None
        token = bearer_token(authorization)
        if token is None or length not in (None, b"0"):
            return None
        return await self.caller_with_role(scope["app"], _ROUTE, token, _BUYER)
