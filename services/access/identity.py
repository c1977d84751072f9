"""Organisations and API clients: the identity domain (no FastAPI here)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.access.account_status import AccountStatus
from services.access.client_secrets import hash_secret, new_client_id, new_client_secret, verify_secret
from services.access.models import ApiClient, Organisation
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.pagination import page_of, read_cursor

ORG_ROLES = ("provider", "buyer", "regulator", "operator")
CLIENT_ROLES = (*ORG_ROLES, "service")


def new_org_id() -> str:
    return "org_" + secrets.token_hex(10)


# --- organisations ------------------------------------------------------------

async def create_organisation(session: AsyncSession, name: str, roles: Sequence[str]) -> Organisation:
    org = Organisation(id=new_org_id(), name=name.strip(), roles=sorted(set(roles)),
                       status=AccountStatus.ACTIVE)
    session.add(org)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"An organisation named {name!r} already exists; choose another name "
            "or find it with GET /v1/organisations.",
            problem="organisation-exists",
            title="Organisation exists",
        ) from exc
    return org


async def get_organisation(session: AsyncSession, org_id: str) -> Organisation:
    org = await session.get(Organisation, org_id)
    if org is None:
        raise NotFound(
            f"No organisation {org_id!r}. List organisations with GET /v1/organisations.",
            problem="organisation-not-found",
        )
    return org


async def list_organisations(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    role: str | None = None,
) -> tuple[list[Organisation], str | None]:
    stmt = select(Organisation).order_by(Organisation.id)
    after = read_cursor(cursor, lambda p: str(p["id"]))
    if after is not None:
        stmt = stmt.where(Organisation.id > after)
    if status:
        stmt = stmt.where(Organisation.status == status)
    if role:
        # Roles are a JSON list of fixed names; its text form contains '"role"'.
        stmt = stmt.where(cast(Organisation.roles, String).like(f'%"{role}"%'))
    rows = list(await session.scalars(stmt.limit(limit + 1)))
    return page_of(rows, limit, lambda o: {"id": o.id})


async def set_organisation_status(
    session: AsyncSession, org_id: str, status: str, reason: str | None
) -> Organisation:
    org = await get_organisation(session, org_id)
    if org.status == status:
        raise Conflict(
            f"Organisation {org_id} is already {status}.", problem="no-state-change"
        )
    org.status, org.status_reason = status, reason
    await session.flush()
    return org


# --- API clients ----------------------------------------------------------------

@dataclass(frozen=True)
class IssuedSecret:
    client: ApiClient
    secret: str


def _check_client_roles(org: Organisation, roles: Sequence[str]) -> list[str]:
    wanted = sorted(set(roles))
    allowed = set(org.roles) | ({"service"} if "operator" in org.roles else set())
    extra = [r for r in wanted if r not in allowed]
    if extra:
        raise RuleViolation(
            f"Roles {extra} are not held by organisation {org.id} (it holds {sorted(org.roles)}); "
            "a client can only have its organisation's roles, and `service` only in an operator "
            "organisation.",
            problem="client-roles-not-allowed",
            rule="client-roles-subset-of-organisation",
        )
    return wanted


async def create_client(
    session: AsyncSession,
    org_id: str,
    name: str,
    roles: Sequence[str] | None,
    *,
    client_id: str | None = None,
    secret: str | None = None,
) -> IssuedSecret:
    org = await get_organisation(session, org_id)
    if org.status != AccountStatus.ACTIVE:
        raise RuleViolation(
            f"Organisation {org_id} is {org.status}; reinstate it before adding clients.",
            problem="organisation-not-active",
            rule="clients-only-for-active-organisations",
        )
    granted = _check_client_roles(org, roles if roles else org.roles)
    secret = secret or new_client_secret()
    client = ApiClient(
        client_id=client_id or new_client_id(),
        organisation_id=org.id,
        name=name,
        secret_hash=await hash_secret(secret),
        roles=granted,
        status=AccountStatus.ACTIVE,
    )
    session.add(client)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"Client id {client.client_id!r} is taken.", problem="client-exists") from exc
    return IssuedSecret(client, secret)


async def get_client(session: AsyncSession, client_id: str) -> ApiClient:
    client = await session.get(ApiClient, client_id)
    if client is None:
        raise NotFound(
            f"No API client {client_id!r}. List clients with GET /v1/clients.",
            problem="client-not-found",
        )
    return client


async def list_clients(
    session: AsyncSession, *, limit: int, cursor: str | None, organisation_id: str | None
) -> tuple[list[ApiClient], str | None]:
    stmt = select(ApiClient).order_by(ApiClient.client_id)
    after = read_cursor(cursor, lambda p: str(p["id"]))
    if after is not None:
        stmt = stmt.where(ApiClient.client_id > after)
    if organisation_id:
        stmt = stmt.where(ApiClient.organisation_id == organisation_id)
    rows = list(await session.scalars(stmt.limit(limit + 1)))
    return page_of(rows, limit, lambda c: {"id": c.client_id})


async def set_client_status(
    session: AsyncSession, client_id: str, status: str, reason: str | None
) -> ApiClient:
    client = await get_client(session, client_id)
    if client.status == status:
        raise Conflict(f"Client {client_id} is already {status}.", problem="no-state-change")
    client.status, client.status_reason = status, reason
    await session.flush()
    return client


#: The longest overlap a self-service rotation may keep the old secret for.
MAX_SECRET_OVERLAP = timedelta(days=7)


async def rotate_client_secret(
    session: AsyncSession, client_id: str, *, old_secret_valid_for: timedelta = timedelta(0)
) -> IssuedSecret:
    """A new secret. With ``old_secret_valid_for`` > 0 the current one keeps working until
    then (clients deploy the new secret without an outage); any older previous secret ends now,
    so at most two are ever valid. Zero (the operator's rotation) ends the old one at once."""
    if not timedelta(0) <= old_secret_valid_for <= MAX_SECRET_OVERLAP:
        raise ValueError("the overlap must be between 0 and 7 days")
    client = await get_client(session, client_id)
    secret = new_client_secret()
    now = utcnow()
    if old_secret_valid_for > timedelta(0):
        client.previous_secret_hash = client.secret_hash
        client.previous_secret_expires_at = now + old_secret_valid_for
    else:
        client.previous_secret_hash = None
        client.previous_secret_expires_at = None
    client.secret_hash = await hash_secret(secret)
    client.secret_rotated_at = now
    await session.flush()
    return IssuedSecret(client, secret)


async def count_clients(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiClient)) or 0)


# --- authentication -------------------------------------------------------------

@dataclass(frozen=True)
class Authenticated:
    client: ApiClient
    organisation: Organisation


class ClientAuthError(Exception):
    """Why client authentication failed (mapped to RFC 6749 ``invalid_client``).

    ``reason`` is ``credentials`` (unknown client or wrong secret: nothing more is said),
    ``client_suspended`` or ``organisation_suspended`` (said only to a caller that proved the
    secret, so the client can tell a suspension from a typo)."""

    def __init__(self, message: str, *, reason: str = "credentials",
                 client: ApiClient | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.client = client

    def description(self) -> str:
        """The RFC 6749 ``error_description`` for this failure."""
        if self.reason == "organisation_suspended" and self.client is not None:
            return (f"The client's organisation {self.client.organisation_id} is suspended; its "
                    "clients get no tokens until an operator reinstates it.")
        if self.reason == "client_suspended":
            return "This client is suspended; ask an operator to reinstate it or to create another."
        return "Client authentication failed: unknown client or wrong secret."


async def authenticate_client(session: AsyncSession, client_id: str, secret: str) -> Authenticated:
    client = await session.get(ApiClient, client_id)
    ok = await verify_secret(client.secret_hash if client else None, secret)
    if not ok and client is not None and client.previous_secret_hash is not None and (
            client.previous_secret_expires_at is not None and client.previous_secret_expires_at > utcnow()):
        ok = await verify_secret(client.previous_secret_hash, secret)  # the rotation's overlap
    if client is None or not ok:
        raise ClientAuthError("unknown client or wrong secret")
    if client.status != AccountStatus.ACTIVE:
        raise ClientAuthError(f"client is {client.status}", reason="client_suspended", client=client)
    org = await session.get(Organisation, client.organisation_id)
    if org is None or org.status != AccountStatus.ACTIVE:
        raise ClientAuthError("the client's organisation is suspended", reason="organisation_suspended",
                              client=client)
    return Authenticated(client, org)
