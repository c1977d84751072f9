"""Data-access tokens (RFC 9068 JWTs) for one entitlement: issue, decode,
introspect (no FastAPI here).

Every issue re-checks everything that could have changed since purchase: the
entitlement's status and validity, quota and epsilon counters, both
organisations, the product's catalog status and the usage policy.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jose import jwt
from jose.exceptions import JWTError
from sqlalchemy import JSON, String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.access import entitlements, revocation
from services.access.account_status import AccountStatus
from services.access.audit_events import audit
from services.access.catalog_client import CatalogClient
from services.access.entitlement_status import EntitlementStatus, Shown
from services.access.keys import KeyStore
from services.access.models import Entitlement, Organisation
from services.access.tokens import sign
from shared.auth import ALGORITHM, TOKEN_LEEWAY_SECONDS, Principal, crit_problem, iat_problem
from shared.db import Database, utcnow
from shared.errors import Forbidden, NotFound, ProblemError
from shared.hot_reads import GroupedRead, HotQuery

DATA_TOKEN_TYP = "at+jwt"  # noqa: S105 - a JWT type, not a secret
MAX_LIFETIME = 900
#: Epsilon counters are floats; a remainder below this is "spent".
EPSILON_SLACK = 1e-9


# One round trip for the entitlement and both organisations' status, built and compiled once:
# on PostgreSQL a prepared statement on the hot pool (shared/hot_reads.py: no pre-ping, no
# transaction, no ORM), on SQLite through SQLAlchemy Core. Autocommit loses nothing: the old
# transaction took no locks either, so it saw the same committed state.
@dataclass(slots=True)
class EntitlementFacts:
    """What a data-token issue reads of an entitlement: the columns its checks and its claims
    use. A plain object, not an ORM instance: building a detached ``Entitlement`` (its
    instrumented attributes and state) cost ~110 µs per issue, as much as the read itself."""

    id: str
    buyer_org: str
    provider_org: str
    product_id: str
    version: int
    purpose: str
    audience: str
    grade: str
    valid_from: datetime
    valid_until: datetime
    status: str
    status_reason: str | None
    product_suspended: bool
    billing_suspended: bool
    spend_cap: dict[str, Any] | None
    query_quota: int | None
    queries_used: int
    epsilon_budget: float | None
    epsilon_used: float
    max_rows: int | None
    min_group_size: int | None
    usage_policy: dict[str, Any]
    plan: dict[str, Any]


_FIELDS = tuple(EntitlementFacts.__dataclass_fields__)
_ent = Entitlement.__table__
_buyer, _provider = Organisation.__table__.alias("buyer"), Organisation.__table__.alias("provider")
_ENTITLEMENT_AND_ORGS = HotQuery(
    select(*(_ent.c[name] for name in _FIELDS), _buyer.c.status.label("buyer_org_status"),
           _provider.c.status.label("provider_org_status"))
    .select_from(_ent)
    .outerjoin(_buyer, _buyer.c.id == _ent.c.buyer_org)
    .outerjoin(_provider, _provider.c.id == _ent.c.provider_org)
    .where(_ent.c.id == bindparam("ent_id"))
)
#: The same read for many entitlements at once (PostgreSQL: ``= ANY($1)``), see shared.hot_reads.GroupedRead.
_ENTITLEMENTS_AND_ORGS = HotQuery(
    select(*(_ent.c[name] for name in _FIELDS), _buyer.c.status.label("buyer_org_status"),
           _provider.c.status.label("provider_org_status"))
    .select_from(_ent)
    .outerjoin(_buyer, _buyer.c.id == _ent.c.buyer_org)
    .outerjoin(_provider, _provider.c.id == _ent.c.provider_org)
    .where(_ent.c.id == any_(bindparam("ids", type_=ARRAY(String))))
)
#: asyncpg hands JSON columns back as text (SQLAlchemy, on SQLite, decodes them itself).
_JSON_FIELDS = tuple(name for name in _FIELDS if isinstance(_ent.c[name].type, JSON))


def _facts_of(row: Mapping[str, Any]) -> EntitlementFacts:
    values = {name: row[name] for name in _FIELDS}
    for name in _JSON_FIELDS:
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    return EntitlementFacts(**values)


_GROUPED_READ = GroupedRead(_ENTITLEMENT_AND_ORGS, _ENTITLEMENTS_AND_ORGS, key="ent_id",
                            name="entitlement-group-reader")


async def read_entitlement(db: Database, ent_id: str) -> Mapping[str, Any] | None:
    """The entitlement's issue facts and both organisations' status (a row mapping, or None):
    grouped with concurrent issues on PostgreSQL, a read of its own on SQLite."""
    return await _GROUPED_READ.read(db, ent_id)


@dataclass(frozen=True)
class IssuedDataToken:
    token: str
    jti: str
    expires_in: int
    expires_at: datetime
    entitlement: EntitlementFacts
    claims: dict[str, Any]


def _refuse(problem: str, detail: str, ent: EntitlementFacts, **extra: Any) -> Forbidden:
    return Forbidden(detail, problem=problem, title="Token refused", entitlement_id=ent.id, **extra)


def limits_of(ent: EntitlementFacts) -> dict[str, Any]:
    limits: dict[str, Any] = {"max_rows": ent.max_rows, "min_group_size": ent.min_group_size,
                              "epsilon_budget": ent.epsilon_budget, "query_quota": ent.query_quota}
    query_epsilon = (ent.plan or {}).get("query_epsilon")
    if query_epsilon is not None:  # the plan's default ε per L3 query
        limits["query_epsilon"] = float(query_epsilon)
    return limits


async def check_can_issue(
    ent: EntitlementFacts, orgs: dict[str, str], catalog: CatalogClient, now: datetime
) -> None:
    """Raise the problem that explains why no token can be issued now."""
    if ent.status == EntitlementStatus.REVOKED:
        raise _refuse("entitlement-revoked",
                      f"Entitlement {ent.id} was revoked ({ent.status_reason}); it gives no more "
                      "access. A new order grants a new entitlement.", ent)
    if now < ent.valid_from:
        raise _refuse("entitlement-not-yet-valid",
                      f"Entitlement {ent.id} is valid from {ent.valid_from.isoformat()}; ask for a "
                      "token then.", ent, valid_from=ent.valid_from.isoformat())
    if now >= ent.valid_until:
        raise _refuse("entitlement-expired",
                      f"Entitlement {ent.id} expired at {ent.valid_until.isoformat()}; renew it "
                      "with a new order.", ent, valid_until=ent.valid_until.isoformat())
    if ent.status == EntitlementStatus.SUSPENDED:
        raise _refuse("entitlement-suspended",
                      f"Entitlement {ent.id} is suspended ({ent.status_reason}); no tokens until a "
                      "regulator or operator reinstates it.", ent)
    if ent.billing_suspended:
        raise _refuse("entitlement-unpaid",
                      f"Entitlement {ent.id} is on hold: its subscription's renewal was not paid "
                      "within the grace period. Update the payment method of the subscription "
                      "(orders: POST /v1/subscriptions/{id}/payment-method) and access resumes.", ent)
    if ent.product_suspended:
        raise _refuse("product-suspended",
                      f"Product {ent.product_id} is suspended in the catalog; no tokens until it "
                      "is listed again.", ent, product_id=ent.product_id)
    for org in (ent.buyer_org, ent.provider_org):
        if orgs.get(org, AccountStatus.ACTIVE) != AccountStatus.ACTIVE:
            raise _refuse("organisation-suspended",
                          f"Organisation {org} ({'buyer' if org == ent.buyer_org else 'provider'}) "
                          "is suspended; no tokens until the operator reinstates it.", ent,
                          organisation_id=org)
    if ent.query_quota is not None and ent.queries_used >= ent.query_quota:
        cap = ent.spend_cap
        if cap:
            raise _refuse("spend-cap-reached",
                          f"Entitlement {ent.id} reached the spending cap of {cap.get('amount')} "
                          f"{cap.get('currency')} minor units its buyer set for this billing period "
                          f"({ent.query_quota} queries). Raise the cap (orders: PATCH "
                          f"/v1/subscriptions/{cap.get('subscription_id')}) or wait for the next "
                          "period.", ent, query_quota=ent.query_quota, queries_used=ent.queries_used,
                          spend_cap=cap)
        raise _refuse("quota-exhausted",
                      f"Entitlement {ent.id} has used all {ent.query_quota} queries of its quota; "
                      "buy more with a new order.", ent, query_quota=ent.query_quota,
                      queries_used=ent.queries_used)
    if ent.epsilon_budget is not None and ent.epsilon_used >= ent.epsilon_budget - EPSILON_SLACK:
        raise _refuse("epsilon-budget-exhausted",
                      f"Entitlement {ent.id} has spent its whole privacy budget (epsilon "
                      f"{ent.epsilon_budget}); buy more with a new order.", ent,
                      epsilon_budget=ent.epsilon_budget, epsilon_used=ent.epsilon_used)
    try:
        entitlements.check_usage_policy(ent.usage_policy, ent.purpose, ent.valid_from,
                                        ent.valid_until)
    except ProblemError as exc:
        raise _refuse(exc.problem, exc.detail, ent) from exc
    product = await catalog.product_status(ent.product_id)  # may raise 503
    if product is None or product.status != "listed":
        state = product.status if product else "unknown to the catalog"
        again = ("it was retired for good, so no more tokens" if state == "retired"
                 else "no tokens until it is listed again")
        raise _refuse("product-not-listed",
                      f"Product {ent.product_id} is {state}, not listed; {again}.", ent,
                      product_id=ent.product_id,
                      product_status=product.status if product else None)


async def issue(
    db: Database,
    *,
    ent_id: str,
    principal: Principal,
    keys: KeyStore,
    catalog: CatalogClient,
    issuer: str,
    lifetime: int,
) -> IssuedDataToken:
    """Check, sign and audit (``access.data_token.issued``, committed before the token is
    returned). Two statements in all — the read and the audit event's insert — each shared
    with the issues running at the same moment on PostgreSQL."""
    row = await read_entitlement(db, ent_id)
    ent = _facts_of(row) if row is not None else None
    if ent is None or principal.org_id is None or ent.buyer_org != principal.org_id:
        # Another buyer's entitlement looks exactly like a missing one.
        raise NotFound(
            f"No entitlement {ent_id!r} belongs to your organisation. List yours with "
            "GET /v1/entitlements.",
            problem="entitlement-not-found",
        )
    now = utcnow()
    assert row is not None
    # An organisation missing locally (provider onboarded elsewhere) counts as active.
    orgs = {ent.buyer_org: row["buyer_org_status"] or AccountStatus.ACTIVE,
            ent.provider_org: row["provider_org_status"] or AccountStatus.ACTIVE}
    await check_can_issue(ent, orgs, catalog, now)
    iat = int(now.timestamp())
    # Never past the entitlement's end (RFC 9068 tokens cannot be recalled
    # from a data service's cache, so their life is what bounds exposure).
    exp = min(iat + min(lifetime, MAX_LIFETIME), int(ent.valid_until.timestamp()))
    if exp <= iat:
        raise _refuse("entitlement-expired",
                      f"Entitlement {ent.id} ends at {ent.valid_until.isoformat()}; renew it "
                      "with a new order.", ent)
    jti = secrets.token_urlsafe(18)
    claims: dict[str, Any] = {
        "iss": issuer, "sub": principal.subject, "aud": ent.audience, "exp": exp, "iat": iat,
        "jti": jti, "client_id": principal.client_id, "scope": "query", "org": ent.buyer_org,
        "ent": ent.id, "product": ent.product_id, "version": ent.version, "purpose": ent.purpose,
        "grade": ent.grade, "limits": limits_of(ent),
    }
    token = sign(keys, claims, typ=DATA_TOKEN_TYP)
    await audit(db, "data_token.issued", subject_type="entitlement", subject_id=ent.id,
                actor=principal, jti=jti, audience=ent.audience, expires_in=exp - iat)
    return IssuedDataToken(token, jti, exp - iat, datetime.fromtimestamp(exp, UTC), ent, claims)


# --- reading tokens back (introspection and revocation) ----------------------------

@dataclass(frozen=True)
class DecodedDataToken:
    claims: dict[str, Any]
    entitlement: Entitlement
    expired: bool


async def decode(
    session: AsyncSession, token: str, *, keys: KeyStore, issuer: str
) -> DecodedDataToken | None:
    """Verify a data-access token issued here; ``None`` if it is not one
    (wrong type, unknown key, bad signature, unknown entitlement, wrong
    audience). Expired tokens are returned with ``expired=True``."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.get_unverified_claims(token)
    except JWTError:
        return None
    if header.get("alg") != ALGORITHM or str(header.get("typ", "")).lower() not in (
        DATA_TOKEN_TYP, f"application/{DATA_TOKEN_TYP}"
    ) or crit_problem(header) is not None:
        return None
    key = await keys.get(str(header.get("kid", "")))
    ent_id = unverified.get("ent")
    if key is None or not isinstance(ent_id, str):
        return None
    ent = await session.get(Entitlement, ent_id)
    if ent is None:
        return None
    try:
        # The audience is the entitlement's data service, named explicitly.
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=ent.audience, issuer=issuer,
            options={"verify_exp": False, "require_exp": True, "require_jti": True},
        )
    except JWTError:
        return None
    if iat_problem(claims, TOKEN_LEEWAY_SECONDS) is not None:
        return None  # the data services refuse it too (shared.auth)
    expired = int(claims["exp"]) <= int(utcnow().timestamp())
    return DecodedDataToken(claims, ent, expired)


async def introspect(
    session: AsyncSession, token: str, *, caller: Principal, keys: KeyStore, issuer: str
) -> dict[str, Any]:
    """RFC 7662 answer. A provider only learns about tokens for its own
    products; for anything else it gets ``{"active": false}``."""
    decoded = await decode(session, token, keys=keys, issuer=issuer)
    if decoded is None or decoded.expired:
        return {"active": False}
    ent = decoded.entitlement
    if "service" not in caller.roles and ent.provider_org != caller.org_id:
        return {"active": False}
    if await revocation.is_token_revoked(session, str(decoded.claims["jti"])):
        return {"active": False}
    orgs = await entitlements.org_statuses(session, (ent.buyer_org, ent.provider_org))
    status = entitlements.effective_status(ent, orgs)
    if status != Shown.ACTIVE:
        return {"active": False}
    return {"active": True, "token_type": "Bearer", **decoded.claims,
            "entitlement_status": status}
