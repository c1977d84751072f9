"""Token revocation (RFC 7009), introspection (RFC 7662) and the revocation feed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials
from sqlalchemy import func, select

from services.access import data_tokens, entitlements, revocation
from services.access.audit_events import audit
from services.access.entitlement_schemas import IntrospectionResponse, RevocationFeed, RevocationItem
from services.access.identity import ClientAuthError, authenticate_client
from services.access.models import Entitlement, RevocationEntry
from services.access.routers.oauth import _basic_credentials, oauth_error
from services.access.runtime import Access
from services.access.schemas import OAuthError
from shared.auth import Principal, TokenVerifier, get_principal, platform_bearer, require_roles
from shared.db import DbSession
from shared.errors import PROBLEM_JSON, Forbidden
from shared.events import Actor
from shared.problems import Problem, problem_docs
from shared.runtime import VerifierDep

logger = logging.getLogger("sluice.access.revocation")
router = APIRouter(tags=["revocation"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Client roles that may revoke any data-access token (not only their own).
_REVOKE_ANY = frozenset({"service", "operator"})

FeedReader = Annotated[
    Principal, Depends(require_roles("service", "provider", "regulator", "operator"))
]
_INTROSPECTORS = frozenset({"service", "provider"})
#: Documents (and reads) RFC 7662 client authentication; the bearer alternative is shared.auth's.
_client_basic = HTTPBasic(auto_error=False, description="The introspecting client's id and secret")


@router.post(
    "/oauth/revoke",
    summary="Revoke a data-access token (RFC 7009)",
    description=(
        "Authenticate as a client (`client_secret_basic` or `client_secret_post`, as at "
        "`/oauth/token`) and send the form field `token` (and optionally `token_type_hint`). A "
        "buyer's client may revoke tokens issued to its organisation; `service` and `operator` "
        "clients may revoke any. Answers 200 whether or not the token was known (RFC 7009 §2.2); "
        "the token's `jti` appears in the revocation feed, and data services drop it within "
        "their polling interval.\n\nPlatform tokens cannot be revoked (they are short-lived); "
        "they answer `unsupported_token_type`."
    ),
    responses={
        200: {"description": "Revoked, or not a token of ours (nothing to do)"},
        400: {"model": OAuthError, "description": "invalid_request, unsupported_token_type, "
              "unauthorized_client (the token belongs to another organisation)"},
        401: {"model": OAuthError, "description": "invalid_client"},
    },
)
async def revoke_token(
    request: Request,
    access: Access,
    verifier: VerifierDep,
    session: DbSession,
    token: Annotated[str | None, Form()] = None,
    token_type_hint: Annotated[str | None, Form(examples=["access_token"])] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> Response:
    settings = access.settings
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None and (client_id is not None or client_secret is not None):
        return oauth_error(400, "invalid_request", "Use one client authentication method, not two.")
    if basic is not None:
        cid, secret = basic
    elif client_id and client_secret:
        cid, secret = client_id, client_secret
    else:
        return oauth_error(401, "invalid_client",
                           "Client authentication is missing: use HTTP Basic or client_id and "
                           "client_secret form fields.")
    try:
        who = await authenticate_client(session, cid, secret)
    except ClientAuthError as exc:
        return oauth_error(401, "invalid_client", exc.description())
    if not token:
        return oauth_error(400, "invalid_request", "The form field `token` is missing.")
    decoded = await data_tokens.decode(session, token, keys=access.keys, issuer=settings.token_issuer)
    if decoded is None:
        if await _is_platform_token(verifier, token):
            return oauth_error(400, "unsupported_token_type",
                               "Platform tokens cannot be revoked; they expire within 15 minutes. "
                               "Suspend the client instead (operator).")
        return Response(status_code=200, headers=_NO_STORE)  # unknown token: nothing to do
    claims = decoded.claims
    if not (set(who.client.roles) & _REVOKE_ANY) and claims.get("org") != who.organisation.id:
        return oauth_error(400, "unauthorized_client",
                           "This token was issued to another organisation; only its own clients "
                           "may revoke it.")
    if not decoded.expired:
        jti = str(claims["jti"])
        ent = decoded.entitlement
        added = await revocation.revoke_token(
            session, jti=jti, entitlement_id=ent.id,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            reason=f"revoked by client {who.client.client_id}",
        )
        if added:
            await audit(session, "data_token.revoked", subject_type="data_token", subject_id=jti,
                        actor=Actor(sub=who.client.client_id, org=who.organisation.id),
                        entitlement_id=ent.id, token_type_hint=token_type_hint)
    return Response(status_code=200, headers=_NO_STORE)


async def _is_platform_token(verifier: TokenVerifier, token: str) -> bool:
    try:
        await verifier.verify_claims(token)
    except Exception:  # any verification failure: not a live platform token of ours
        return False
    return True


@router.post(
    "/oauth/introspect",
    response_model=IntrospectionResponse,
    summary="Introspect a data-access token (RFC 7662; service, or the product's provider)",
    description=(
        "Send the form field `token`. Authenticate as the client (RFC 7662 §2.1: "
        "`client_secret_basic` or `client_secret_post`, as at `/oauth/token`) or with a bearer "
        "platform token; the client must hold role `service`, or be of a `provider` organisation "
        "(its data service's client). `active` is true only for a token "
        "issued here that has not expired or been revoked and whose entitlement is usable now; "
        "then the token's claims follow. A provider asking about another provider's token gets "
        "`{\"active\": false}`."
    ),
    responses={**problem_docs(403),
               400: {"model": OAuthError, "description": "invalid_request (no `token`)"},
               401: {"model": OAuthError | Problem, "description": "invalid_client (RFC 6749, client "
                     "authentication failed) or a problem+json (bearer token missing or invalid)",
                     "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
)
async def introspect_token(
    request: Request,
    access: Access,
    session: DbSession,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(platform_bearer)],
    _basic: Annotated[HTTPBasicCredentials | None, Depends(_client_basic)],
    token: Annotated[str | None, Form()] = None,
    token_type_hint: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None and (client_id is not None or client_secret is not None):
        return oauth_error(400, "invalid_request", "Use one client authentication method, not two.")
    if basic is not None or (client_id and client_secret):
        cid, secret = basic if basic is not None else (str(client_id), str(client_secret))
        try:
            who = await authenticate_client(session, cid, secret)
        except ClientAuthError as exc:
            return oauth_error(401, "invalid_client", exc.description())
        caller = Principal(subject=who.client.client_id, client_id=who.client.client_id,
                           org_id=who.organisation.id, roles=frozenset(who.client.roles),
                           token_id=None, claims={})
    else:
        caller = await get_principal(request, bearer)
    if not caller.has_any(_INTROSPECTORS):
        raise Forbidden(f"Introspection is for the service or provider role; this client has: "
                        f"{', '.join(sorted(caller.roles)) or 'none'}.",
                        required_roles=sorted(_INTROSPECTORS))
    if not token:
        return oauth_error(400, "invalid_request", "The form field `token` is missing.")
    answer: dict[str, Any] = await data_tokens.introspect(
        session, token, caller=caller, keys=access.keys, issuer=access.settings.token_issuer
    )
    return JSONResponse(answer, headers=_NO_STORE)


@router.get(
    "/v1/revocations",
    response_model=RevocationFeed,
    summary="The revocation feed for data services (service, provider, regulator, operator)",
    description=(
        "Revoked data-access tokens (`kind: token`, `id` = `jti`) and revoked, suspended or "
        "reinstated entitlements (`kind: entitlement`), oldest first. Poll with "
        "`since=<next_cursor of the previous answer>` (omit it the first time) at least every "
        "30 s; the cursor is exact: every entry appears once, in order. Providers see entries "
        "for their own products only."
    ),
    responses=problem_docs(400, 401, 403),
)
async def revocation_feed(
    session: DbSession,
    caller: FeedReader,
    since: Annotated[str | None, Query(description="`next_cursor` of the previous poll",
                                       examples=["42"])] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> RevocationFeed:
    start = revocation.parse_since(since)
    # Organisation suspensions are read from the organisations table: bring
    # the feed in line before reading it.
    await entitlements.reconcile_organisation_suspensions(session)
    if caller.has_any(entitlements.OVERSEERS):
        rows, cursor, more = await revocation.read_feed(session, since=start, limit=limit)
    else:
        rows, cursor, more = await _provider_feed(session, caller, start, limit)
    return RevocationFeed(items=[RevocationItem.of(r) for r in rows], next_cursor=str(cursor),
                          has_more=more)


async def _provider_feed(
    session: DbSession, caller: Principal, since: int, limit: int
) -> tuple[list[RevocationEntry], int, bool]:
    own = select(Entitlement.id).where(Entitlement.provider_org == caller.org_id)
    rows = list(await session.scalars(
        select(RevocationEntry)
        .where(RevocationEntry.id > since, RevocationEntry.entitlement_id.in_(own))
        .order_by(RevocationEntry.id).limit(limit + 1)
    ))
    more = len(rows) > limit
    rows = rows[:limit]
    if more:
        return rows, rows[-1].id, more
    # Nothing more for this provider: resume after everything committed so
    # far, so the next poll does not rescan other providers' entries.
    newest = await session.scalar(select(func.max(RevocationEntry.id)))
    return rows, max(since, int(newest or 0)), more
