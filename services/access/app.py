"""Access service app factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.access.routers import billing, entitlements, identity, oauth, revocation, usage
from services.access.runtime import access_state
from services.access.settings import AccessSettings
from services.access.token_lane import DataTokenLane
from shared.app import create_service_app
from shared.audit_relay import AUDIT_RELAY

DESCRIPTION = """
Identity and tokens for the Sluice marketplace.

* **Organisations and API clients** (operators onboard them).
* **OAuth 2.0 client credentials** at `POST /oauth/token`; tokens are RS256 JWTs with `kid`,
  verifiable offline with the keys at `/.well-known/jwks.json`.
* **Signing-key rotation** without downtime.
* **Entitlements** granted from paid orders, **data-access tokens** (RFC 9068) for them,
  revocation (RFC 7009), introspection (RFC 7662), the revocation feed, and the usage ledger
  (see docs/access-entitlements.md).

Errors are RFC 9457 `application/problem+json`, except on `/oauth/*`, which follows RFC 6749.
"""


def create_app(settings: AccessSettings | None = None) -> FastAPI:
    settings = settings or AccessSettings()
    app = create_service_app(
        settings,
        title="Sluice access",
        description=DESCRIPTION,
        routers=[oauth.router, identity.router, entitlements.router, billing.router, revocation.router,
                 usage.router],
        lifespan_steps=[access_state],
        relays=[AUDIT_RELAY],
        # The data-token issue, before FastAPI's routing and dependency solving (token_lane.py).
        inner_middleware=[DataTokenLane],
        openapi_tags=[
            {"name": "oauth", "description": "OAuth 2.0 token endpoint and discovery"},
            {"name": "identity", "description": "Organisations, API clients and signing keys"},
            {"name": "entitlements", "description": "Entitlements and data-access tokens"},
            {"name": "revocation", "description": "Token revocation, introspection, revocation feed"},
            {"name": "usage", "description": "Usage records, quota and privacy-budget ledger"},
            {"name": "operations", "description": "Health, readiness and metrics"},
        ],
    )
    # Each service's /docs (another origin) asks /oauth/token for a token in the browser: allow
    # exactly the platform's own origins, for the OAuth endpoints' methods and headers.
    origins = sorted({u.rstrip("/") for u in (settings.public_url, settings.catalog_url,
                                              settings.orders_url, settings.audit_url) if u})
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["POST"],
                       allow_headers=["Authorization", "Content-Type"])
    return app
