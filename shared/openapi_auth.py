"""The OAuth 2.0 client-credentials flow in every service's OpenAPI document.

Why: the routes read a plain bearer token (``HTTPBearer``), which Swagger UI can only take
pasted in. Declaring the client-credentials flow beside it (``tokenUrl`` = the access service's
``/oauth/token``) lets ``/docs`` obtain a platform token from a client id and secret, and tells
generated clients where tokens come from. The bearer scheme stays: either satisfies a route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

SCHEME = "OAuth2ClientCredentials"
_BEARER = "HTTPBearer"
_SCOPES = {
    "provider": "the provider role", "buyer": "the buyer role", "regulator": "the regulator role",
    "operator": "the operator role", "service": "internal services",
}


def add_client_credentials(schema: dict[str, Any], token_url: str,
                           applies: Callable[[str], bool] = lambda path: True) -> dict[str, Any]:
    """Declare the flow and offer it on every operation of ``applies`` paths that takes the
    platform bearer token (in place; returns ``schema``)."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {
        "type": "oauth2",
        "description": "A platform token from the access service (client credentials: your API "
        "client's id and secret). Scopes narrow the token to some of the client's roles; none "
        "asks for all of them.",
        "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": _SCOPES}},
    }
    for path, ops in schema.get("paths", {}).items():
        if not applies(path):
            continue
        for op in ops.values():
            security = op.get("security") if isinstance(op, dict) else None
            if security and any(_BEARER in req for req in security) and not any(
                    SCHEME in req for req in security):
                security.append({SCHEME: []})
    return schema


def install(app: FastAPI, token_url: str, applies: Callable[[str], bool] = lambda path: True) -> None:
    """Make ``app.openapi()`` declare the flow (built once, like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_client_credentials(build(), token_url, applies)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
