"""Operator endpoints for organisations, API clients and signing keys; ``/v1/me``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from services.access import entitlements, identity
from services.access.account_status import AccountStatus
from services.access.audit_events import audit
from services.access.models import SigningKey as SigningKeyRow
from services.access.runtime import Access
from services.access.schemas import (
    Client,
    ClientCreate,
    ClientWithSecret,
    Organisation,
    OrganisationCreate,
    SecretRotation,
    SigningKeyInfo,
    StatusChange,
)
from shared.auth import CurrentPrincipal, Operator, Principal, require_roles
from shared.db import DbSession
from shared.pagination import CursorParam, LimitParam, Page
from shared.problems import problem_docs

OperatorOrService = Annotated[Principal, Depends(require_roles("operator", "service"))]

router = APIRouter(prefix="/v1", tags=["identity"])

_AUTH = problem_docs(401, 403)


async def _client_event(
    session: DbSession, action: str, client_id: str, operator: Principal, reason: str | None
) -> None:
    await audit(session, action, subject_type="client", subject_id=client_id, actor=operator,
                reason=reason)


def _with_secret(issued: identity.IssuedSecret) -> ClientWithSecret:
    return ClientWithSecret(
        **Client.model_validate(issued.client).model_dump(), client_secret=issued.secret
    )


# --- self-service (any API client, for itself) ---------------------------------------
# Registered before /clients/{client_id}/…, so "me" is never taken for a client id.

@router.post(
    "/clients/me/rotate-secret", response_model=ClientWithSecret,
    summary="Rotate your own client's secret, keeping the old one for an overlap you choose (any client)",
    description="The client of the calling token gets a new secret (shown once). The current secret "
    "keeps working for `old_secret_expires_in` seconds (at most 7 days; 0 ends it now), so "
    "deployments switch without an outage; at most two secrets are ever valid. Audited as "
    "`access.client.secret_rotated`.",
    responses=problem_docs(401, 404, 422),
)
async def rotate_own_secret(
    session: DbSession, caller: CurrentPrincipal, body: SecretRotation | None = None
) -> ClientWithSecret:
    overlap = (body or SecretRotation()).old_secret_expires_in
    issued = await identity.rotate_client_secret(
        session, caller.client_id, old_secret_valid_for=timedelta(seconds=overlap))
    await audit(session, "client.secret_rotated", subject_type="client", subject_id=caller.client_id,
                actor=caller, self_service=True, old_secret_expires_in=overlap)
    return _with_secret(issued)


# --- organisations (operator) ---------------------------------------------------

@router.post("/organisations", status_code=status.HTTP_201_CREATED, response_model=Organisation,
             summary="Onboard an organisation (operator)", responses=problem_docs(401, 403, 409, 422))
async def create_organisation(
    body: OrganisationCreate, session: DbSession, operator: Operator
) -> Organisation:
    org = await identity.create_organisation(session, body.name, body.roles)
    await audit(session, "organisation.created", subject_type="organisation", subject_id=org.id,
                actor=operator, name=org.name, roles=org.roles)
    return Organisation.model_validate(org)


@router.get("/organisations", response_model=Page[Organisation],
            summary="List organisations (operator)", responses=_AUTH)
async def list_organisations(
    session: DbSession,
    _: Operator,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(active|suspended)$")] = None,
    role: Annotated[str | None, Query(pattern="^(provider|buyer|regulator|operator)$")] = None,
) -> Page[Organisation]:
    rows, nxt = await identity.list_organisations(
        session, limit=limit, cursor=cursor, status=status_, role=role
    )
    return Page(items=[Organisation.model_validate(o) for o in rows], next_cursor=nxt)


@router.get("/organisations/{org_id}", response_model=Organisation,
            summary="Get an organisation (operator, service)",
            description="Services read it too (orders checks that a private offer goes to an active buyer "
            "organisation).", responses=problem_docs(401, 403, 404))
async def get_organisation(org_id: str, session: DbSession, _: OperatorOrService) -> Organisation:
    return Organisation.model_validate(await identity.get_organisation(session, org_id))


@router.post("/organisations/{org_id}/suspend", response_model=Organisation,
             summary="Suspend an organisation: its clients get no new tokens (operator)",
             responses=problem_docs(401, 403, 404, 409, 422))
async def suspend_organisation(
    org_id: str, body: StatusChange, session: DbSession, operator: Operator
) -> Organisation:
    org = await identity.set_organisation_status(session, org_id, AccountStatus.SUSPENDED, body.reason)
    await audit(session, "organisation.suspended", subject_type="organisation", subject_id=org.id,
                actor=operator, reason=body.reason)
    # Its entitlements stop at once: no new data-access tokens, and the
    # revocation feed tells data services to refuse live ones.
    await entitlements.on_organisation_status_changed(
        session, org.id, AccountStatus.SUSPENDED, body.reason, actor=operator)
    return Organisation.model_validate(org)


@router.post("/organisations/{org_id}/reinstate", response_model=Organisation,
             summary="Reinstate a suspended organisation (operator)",
             responses=problem_docs(401, 403, 404, 409, 422))
async def reinstate_organisation(
    org_id: str, body: StatusChange, session: DbSession, operator: Operator
) -> Organisation:
    org = await identity.set_organisation_status(session, org_id, AccountStatus.ACTIVE, body.reason)
    await audit(session, "organisation.reinstated", subject_type="organisation", subject_id=org.id,
                actor=operator, reason=body.reason)
    await entitlements.on_organisation_status_changed(
        session, org.id, AccountStatus.ACTIVE, body.reason, actor=operator)
    return Organisation.model_validate(org)


# --- API clients (operator) -------------------------------------------------------

@router.post("/organisations/{org_id}/clients", status_code=status.HTTP_201_CREATED,
             response_model=ClientWithSecret,
             summary="Create an API client; the secret is shown once (operator)",
             responses=problem_docs(401, 403, 404, 409, 422))
async def create_client(
    org_id: str, body: ClientCreate, session: DbSession, operator: Operator
) -> ClientWithSecret:
    issued = await identity.create_client(session, org_id, body.name, body.roles)
    await audit(session, "client.created", subject_type="client", subject_id=issued.client.client_id,
                actor=operator, organisation_id=org_id, roles=issued.client.roles)
    return _with_secret(issued)


@router.get("/clients", response_model=Page[Client], summary="List API clients (operator)",
            responses=_AUTH)
async def list_clients(
    session: DbSession,
    _: Operator,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
    organisation_id: str | None = None,
) -> Page[Client]:
    rows, nxt = await identity.list_clients(
        session, limit=limit, cursor=cursor, organisation_id=organisation_id
    )
    return Page(items=[Client.model_validate(c) for c in rows], next_cursor=nxt)


@router.get("/clients/{client_id}", response_model=Client, summary="Get an API client (operator)",
            responses=problem_docs(401, 403, 404))
async def get_client(client_id: str, session: DbSession, _: Operator) -> Client:
    return Client.model_validate(await identity.get_client(session, client_id))


@router.post("/clients/{client_id}/suspend", response_model=Client,
             summary="Suspend an API client: no new tokens (operator)",
             responses=problem_docs(401, 403, 404, 409, 422))
async def suspend_client(
    client_id: str, body: StatusChange, session: DbSession, operator: Operator
) -> Client:
    client = await identity.set_client_status(session, client_id, AccountStatus.SUSPENDED, body.reason)
    await _client_event(session, "client.suspended", client.client_id, operator, body.reason)
    return Client.model_validate(client)


@router.post("/clients/{client_id}/reinstate", response_model=Client,
             summary="Reinstate a suspended API client (operator)",
             responses=problem_docs(401, 403, 404, 409, 422))
async def reinstate_client(
    client_id: str, body: StatusChange, session: DbSession, operator: Operator
) -> Client:
    client = await identity.set_client_status(session, client_id, AccountStatus.ACTIVE, body.reason)
    await _client_event(session, "client.reinstated", client.client_id, operator, body.reason)
    return Client.model_validate(client)


@router.post("/clients/{client_id}/rotate-secret", response_model=ClientWithSecret,
             summary="Replace a client's secret; the old one stops working at once (operator)",
             responses=problem_docs(401, 403, 404))
async def rotate_secret(client_id: str, session: DbSession, operator: Operator) -> ClientWithSecret:
    issued = await identity.rotate_client_secret(session, client_id)
    await _client_event(session, "client.secret_rotated", client_id, operator, None)
    return _with_secret(issued)


# --- signing keys (operator) --------------------------------------------------------

@router.get("/signing-keys", response_model=Page[SigningKeyInfo],
            summary="Signing keys in use (operator)",
            description="The list envelope of every list (`items`, `next_cursor`); the keys in use "
            "(active and retiring) are few, so there is one page and `next_cursor` is null.",
            responses=_AUTH)
async def list_signing_keys(access: Access, _: Operator) -> Page[SigningKeyInfo]:
    keys = access.keys
    await keys.refresh()  # what the database says, not what this replica last read
    return Page(items=[SigningKeyInfo(**k) for k in keys.describe()], next_cursor=None)


@router.post("/signing-keys/rotate", response_model=SigningKeyInfo, status_code=201,
             summary="Rotate the token signing key (operator)",
             description="The new key signs from now on; the old key keeps verifying until every "
             "token it signed has expired.", responses=_AUTH)
async def rotate_signing_key(access: Access, operator: Operator) -> SigningKeyInfo:
    keys = access.keys

    async def audited(session: AsyncSession, new: SigningKeyRow) -> None:
        await audit(session, "signing_key.rotated", subject_type="signing_key", subject_id=new.kid,
                    actor=operator)

    new = await keys.rotate(record=audited)
    return SigningKeyInfo(kid=new.kid, status=new.status, retire_after=new.retire_after)
