"""Dataservice app factory: the provider-side, query-only data service."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.dataservice.settings import DataServiceSettings
from shared.app import create_service_app
from shared.auth import InvalidToken, JWKSKeySource, TokenVerifier

DESCRIPTION = """
The provider-side, query-only data service: buyers send structured queries with a
short-lived data-access token (RFC 9068, `typ: at+jwt`, `aud` = this service) and
never receive a copy of the data.
"""


async def _require_query_scope(claims: dict[str, Any]) -> None:
    if "query" not in str(claims.get("scope", "")).split():
        raise InvalidToken("This data service accepts only data-access tokens with scope 'query'.")


def data_token_verifier(app: FastAPI) -> TokenVerifier:
    settings: DataServiceSettings = app.state.settings
    keys = JWKSKeySource(
        settings.jwks_url,
        app.state.http,
        cache_seconds=settings.jwks_cache_seconds,
        min_refetch_seconds=settings.jwks_min_refetch_seconds,
    )
    return TokenVerifier(
        keys,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        required_typ="at+jwt",
        extra_check=_require_query_scope,
    )


def create_app(settings: DataServiceSettings | None = None) -> FastAPI:
    settings = settings or DataServiceSettings()
    return create_service_app(
        settings,
        title="Sluice dataservice",
        description=DESCRIPTION,
        routers=[],
        make_verifier=data_token_verifier,
    )
