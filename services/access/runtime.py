"""The access service's typed state (settings, signing keys, its own service token, the
catalog client): built by the :func:`access_state` lifespan step, reached by routers through
:data:`Access` (and the catalog client through ``routers.entitlements.Catalog``, which tests
override with ``app.dependency_overrides[get_catalog]`` to talk to a fake catalog)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from services.access.bootstrap import bootstrap_identity
from services.access.catalog_client import CatalogClient
from services.access.keys import KeyStore
from services.access.settings import AccessSettings
from services.access.tokens import LocalServiceToken
from shared.auth import PLATFORM_TOKEN_TYP, TokenVerifier
from shared.db import Database
from shared.periodic import Periodic
from shared.runtime import runtime_of

logger = logging.getLogger("sluice.access")


@dataclass
class AccessState:
    settings: AccessSettings
    db: Database
    #: The signing keys (the access service signs and verifies with them; no JWKS fetch).
    keys: KeyStore
    #: The catalog's product statuses, asked with this service's locally signed token.
    catalog: CatalogClient


@contextlib.asynccontextmanager
async def access_state(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: load (or create) the signing keys, bootstrap the first operator, and
    keep re-reading the keys while serving (another replica may rotate them)."""
    runtime = runtime_of(app)
    settings, db = runtime.settings, runtime.db
    assert isinstance(settings, AccessSettings)
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
    # The access service verifies its own tokens from its key store: no HTTP to itself.
    runtime.verifier = TokenVerifier(
        keys,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        required_typ=PLATFORM_TOKEN_TYP,
    )
    # Calls to other services (audit relay, catalog) use a locally signed token.
    token = LocalServiceToken(keys, client_id=settings.service_client_id, issuer=settings.token_issuer,
                              audience=settings.token_audience)
    runtime.service_token = token
    runtime.set_state(AccessState(
        settings=settings, db=db, keys=keys,
        catalog=CatalogClient(settings.catalog_url, runtime.http, token,
                              status_cache_seconds=settings.catalog_status_cache_seconds),
    ))
    async with Periodic("refresh-signing-keys", keys.refresh, settings.key_refresh_seconds,
                        run_at_start=False).running():
        yield


async def get_access_state(request: Request) -> AccessState:
    return runtime_of(request.app).state(AccessState)


#: The access service's state, for routers.
Access = Annotated[AccessState, Depends(get_access_state)]
