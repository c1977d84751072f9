"""OAuth 2.0 endpoints: client credentials token, JWKS and server metadata."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from services.access.audit_events import audit
from services.access.identity import ClientAuthError, authenticate_client
from services.access.runtime import Access
from services.access.schemas import OAuthError, TokenResponse
from services.access.tokens import issue_platform_token
from shared.db import DbSession
from shared.events import Actor

logger = logging.getLogger("sluice.access.oauth")
#: How long verifiers may cache the JWKS at most (shorter while a retiring key nears its end).
JWKS_MAX_AGE_SECONDS = 60

router = APIRouter(tags=["oauth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """RFC 6749 §5.2 error response."""
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="sluice"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return ("", "")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


@router.post(
    "/oauth/token",
    summary="Get a platform token (OAuth 2.0 client credentials)",
    description=(
        "Authenticate with `client_secret_basic` (HTTP Basic) or `client_secret_post` "
        "(`client_id` and `client_secret` form fields) and send `grant_type=client_credentials`. "
        "Optional `scope`: a space-separated subset of the client's roles.\n\n"
        "```\ncurl -u $CLIENT_ID:$CLIENT_SECRET -d grant_type=client_credentials "
        "http://127.0.0.1:8003/oauth/token\n```\n\nErrors follow RFC 6749 §5.2 (`error`, "
        "`error_description`)."
    ),
    response_model=TokenResponse,
    responses={
        400: {"model": OAuthError, "description": "invalid_request, unsupported_grant_type, invalid_scope"},
        401: {"model": OAuthError, "description": "invalid_client"},
    },
)
async def issue_token(
    request: Request,
    access: Access,
    session: DbSession,
    grant_type: Annotated[str | None, Form(examples=["client_credentials"])] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form(examples=["provider"])] = None,
) -> Any:
    settings = access.settings
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None and (client_id is not None and client_secret is not None):
        return oauth_error(400, "invalid_request", "Use one client authentication method, not two.")
    if not grant_type:
        return oauth_error(
            400, "invalid_request",
            "grant_type is missing; send an application/x-www-form-urlencoded body with "
            "grant_type=client_credentials.",
        )
    if grant_type != "client_credentials":
        return oauth_error(
            400, "unsupported_grant_type",
            f"grant_type {grant_type!r} is not supported; use client_credentials.",
        )
    if basic is not None:
        cid, secret = basic
    elif client_id and client_secret:
        cid, secret = client_id, client_secret
    else:
        return oauth_error(
            401, "invalid_client",
            "Client authentication is missing: use HTTP Basic or client_id and client_secret "
            "form fields.",
        )
    try:
        who = await authenticate_client(session, cid, secret)
    except ClientAuthError as exc:
        logger.info("client authentication failed", extra={"fields": {"client_id": cid[:64],
                                                                        "reason": str(exc)}})
        # A suspension is a decision (denied), a wrong secret a failed attempt; the suspended
        # client's organisation is the actor's, since the secret was proven.
        org = exc.client.organisation_id if exc.client is not None else None
        await audit(session, "token.refused", subject_type="client", subject_id=cid[:64] or "-",
                    actor=Actor(sub=cid[:64] or None, org=org),
                    outcome="failure" if exc.reason == "credentials" else "denied",
                    reason=exc.reason, grant_type=grant_type)
        return oauth_error(401, "invalid_client", exc.description())
    requested = scope.split() if scope else None
    if requested:
        unknown = sorted(set(requested) - set(who.client.roles))
        if unknown:
            return oauth_error(
                400, "invalid_scope",
                f"Scope {unknown} is not granted to this client; it may ask for "
                f"{sorted(who.client.roles)}.",
            )
    issued = issue_platform_token(
        access.keys, who, issuer=settings.token_issuer, audience=settings.token_audience,
        lifetime=settings.token_lifetime_seconds, requested=requested,
    )
    await audit(session, "token.issued", subject_type="client", subject_id=who.client.client_id,
                actor=Actor(sub=who.client.client_id, org=who.organisation.id),
                jti=issued.jti, roles=issued.roles, expires_in=issued.expires_in)
    return JSONResponse(
        {"access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in,
         "scope": " ".join(issued.roles)},
        headers=_NO_STORE,
    )


@router.get("/.well-known/jwks.json", summary="Public keys that verify platform and data tokens")
async def jwks(access: Access) -> JSONResponse:
    keys = access.keys
    await keys.read_since(time.monotonic())  # a rotation on another replica shows at once
    max_age = keys.jwks_max_age(cap=JWKS_MAX_AGE_SECONDS)
    return JSONResponse(keys.jwks(), headers={"Cache-Control": f"public, max-age={max_age}"})


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="OAuth 2.0 authorization server metadata (RFC 8414)",
)
async def server_metadata(access: Access) -> dict[str, Any]:
    settings = access.settings
    base = settings.public_url.rstrip("/")
    return {
        "issuer": settings.token_issuer,
        "token_endpoint": f"{base}/oauth/token",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint": f"{base}/oauth/revoke",
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "scopes_supported": ["provider", "buyer", "regulator", "operator", "service"],
        "service_documentation": f"{base}/docs",
    }
