"""Access service app factory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.access.bootstrap import bootstrap_identity
from services.access.keys import KeyStore
from services.access.routers import billing, entitlements, identity, oauth, revocation, usage
from services.access.settings import AccessSettings
from services.access.tokens import LocalServiceToken
from shared.app import create_service_app
from shared.audit_relay import AUDIT_RELAY
from shared.auth import PLATFORM_TOKEN_TYP, TokenVerifier
from shared.db import Database
from shared.periodic import Periodic
from shared.runtime import runtime_of

logger = logging.getLogger("sluice.access")

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


@contextlib.asynccontextmanager
async def keys_and_bootstrap(app: FastAPI) -> AsyncIterator[None]:
    settings: AccessSettings = app.state.settings
    db: Database = app.state.db
    passphrase = settings.signing_key_passphrase
    if passphrase is None:
        logger.warning(
            "signing keys are stored unencrypted; set SLUICE_ACCESS_SIGNING_KEY_PASSPHRASE in production"
        )
    keys = KeyStore(
        db.sessionmaker,
        bits=settings.signing_key_bits,
        passphrase=passphrase.get_secret_value().encode() if passphrase else None,
        max_token_lifetime=timedelta(seconds=max(settings.token_lifetime_seconds,
                                                 settings.data_token_lifetime_seconds)),
        refresh_interval=timedelta(seconds=settings.key_refresh_seconds),
    )
    await keys.load()
    await bootstrap_identity(db.sessionmaker, settings)
    app.state.keys = keys
    runtime = runtime_of(app)
    # The access service verifies its own tokens from its key store: no HTTP to itself.
    runtime.verifier = TokenVerifier(
        keys,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        required_typ=PLATFORM_TOKEN_TYP,
    )

    # Calls to other services (audit relay, catalog) use a locally signed token.
    runtime.service_token = app.state.service_token_source = LocalServiceToken(
        keys, client_id=settings.service_client_id, issuer=settings.token_issuer,
        audience=settings.token_audience,
    )

    async with Periodic("refresh-signing-keys", keys.refresh, settings.key_refresh_seconds,
                        run_at_start=False).running():
        yield


def create_app(settings: AccessSettings | None = None) -> FastAPI:
    settings = settings or AccessSettings()
    app = create_service_app(
        settings,
        title="Sluice access",
        description=DESCRIPTION,
        routers=[oauth.router, identity.router, entitlements.router, billing.router, revocation.router,
                 usage.router],
        lifespan_steps=[keys_and_bootstrap],
        relays=[AUDIT_RELAY],
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
