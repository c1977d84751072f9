"""Entitlements: granted from paid orders, revoked, suspended and reinstated
(no FastAPI here).

An entitlement is usable when its own status is ``active``, it is within its
validity window, its product is not suspended (catalog push) and neither the
buyer nor the provider organisation is suspended (read from the organisations
table every time, so an organisation suspension takes effect at once even
before the feed catches up).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.access import revocation
from services.access.account_status import AccountStatus
from services.access.audit_events import audit
from services.access.catalog_client import CatalogClient
from services.access.entitlement_status import EntitlementStatus, Shown, move
from services.access.models import Entitlement, Organisation
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.events import Actor
from shared.pagination import page_of, read_cursor

#: Roles that see every entitlement.
OVERSEERS = frozenset({"regulator", "operator", "service"})
GRADES_WITH_DELIVERY = ("L1_public", "L2_internal", "L3_sensitive")


def new_entitlement_id() -> str:
    return "ent_" + secrets.token_hex(12)


@dataclass(frozen=True)
class GrantRequest:
    order_id: str
    buyer_org: str
    product_id: str
    version: int
    plan_id: str
    purpose: str
    valid_from: datetime
    valid_until: datetime
    #: The order's total quota when orders sends it (metered bundles, several
    #: periods); otherwise derived from the plan (see :func:`quota_for`).
    query_quota: int | None = None
    #: L3: the ε the order bought; otherwise the plan's epsilon, else the product's guardrail.
    epsilon_budget: float | None = None


# --- status -----------------------------------------------------------------------

async def org_statuses(session: AsyncSession, org_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(org_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Organisation.id, Organisation.status).where(Organisation.id.in_(ids))
    )
    return {r[0]: r[1] for r in rows}


def suspended_by(ent: Entitlement, orgs: dict[str, str]) -> list[str]:
    """Why an entitlement is suspended: ``entitlement``, ``product``, ``organisation``,
    ``billing`` (non-payment)."""
    why = []
    if ent.status == EntitlementStatus.SUSPENDED:
        why.append("entitlement")
    if ent.product_suspended:
        why.append("product")
    if ent.billing_suspended:
        why.append("billing")
    if ent.org_suspended or any(
        orgs.get(o, AccountStatus.ACTIVE) != AccountStatus.ACTIVE for o in (ent.buyer_org, ent.provider_org)
    ):
        why.append("organisation")
    return why


def effective_status(ent: Entitlement, orgs: dict[str, str], now: datetime | None = None) -> str:
    """revoked > expired > suspended > active, as shown to callers."""
    now = now or utcnow()
    if ent.status == EntitlementStatus.REVOKED:
        return Shown.REVOKED
    if ent.valid_until <= now:
        return Shown.EXPIRED
    if suspended_by(ent, orgs):
        return Shown.SUSPENDED
    return Shown.ACTIVE


# --- granting -------------------------------------------------------------------------

def find_plan(version: dict[str, Any], plan_id: str) -> dict[str, Any]:
    for plan in version.get("plans") or []:
        if isinstance(plan, dict) and plan.get("id") == plan_id:
            return plan
    offered = [p.get("id") for p in version.get("plans") or [] if isinstance(p, dict)]
    raise RuleViolation(
        f"Plan {plan_id!r} is not offered by this product version (it offers {offered}); "
        "the order must name one of them.",
        problem="unknown-plan",
        rule="entitlement-plan-from-pinned-version",
    )


def check_usage_policy(
    policy: dict[str, Any], purpose: str, valid_from: datetime, valid_until: datetime
) -> None:
    """The product's usage policy, checked at grant and again at every token."""
    allowed = policy.get("allowed_purposes") or []
    if purpose not in allowed:
        raise RuleViolation(
            f"Purpose {purpose!r} is not allowed by the product's usage policy "
            f"(allowed: {allowed}).",
            problem="purpose-not-allowed",
            rule="declared-purpose-must-be-allowed",
        )
    max_days = policy.get("max_duration_days")
    # Orders checks the nominal length (30-day months, 365-day years) but grants
    # calendar months, so accept up to a day per nominal month more.
    if isinstance(max_days, int) and valid_until - valid_from > timedelta(
        days=max_days + max_days // 30 + 1
    ):
        raise RuleViolation(
            f"Access from {valid_from.isoformat()} to {valid_until.isoformat()} is longer than the "
            f"usage policy's maximum of {max_days} days.",
            problem="duration-exceeds-policy",
            rule="access-within-max-duration",
        )


def quota_for(plan: dict[str, Any], valid_from: datetime, valid_until: datetime) -> int | None:
    """The entitlement's total query quota, as orders prices it: a periodic
    plan's quota is per period (times the periods bought); a metered plan's is
    its included bundle. ``None`` is unlimited."""
    quota = plan.get("query_quota")
    if plan.get("kind") == "metered":
        quota = plan.get("included_queries") or quota
    elif quota is not None and plan.get("period") in ("month", "year"):
        days = (valid_until - valid_from).total_seconds() / 86400
        periods = max(1, round(days / (30.44 if plan["period"] == "month" else 365.25)))
        quota = int(quota) * periods
    return int(quota) if quota is not None else None


def _same_terms(ent: Entitlement, req: GrantRequest) -> bool:
    return (ent.buyer_org, ent.product_id, ent.version, ent.plan_id, ent.purpose) == (
        req.buyer_org, req.product_id, req.version, req.plan_id, req.purpose
    )


def check_same_terms(ent: Entitlement, req: GrantRequest) -> None:
    """A repeat of an order's grant must name the same terms: another entitlement for the
    order is a ``Conflict`` (an order grants one entitlement)."""
    if not _same_terms(ent, req):
        raise Conflict(
            f"Order {req.order_id} already has entitlement {ent.id} with different terms "
            f"(product {ent.product_id} v{ent.version}, plan {ent.plan_id}, purpose {ent.purpose}); "
            "an order grants one entitlement.",
            problem="order-already-granted",
            entitlement_id=ent.id,
        )


async def _existing_for_order(session: AsyncSession, req: GrantRequest) -> Entitlement | None:
    ent = await session.scalar(select(Entitlement).where(Entitlement.order_id == req.order_id))
    if ent is not None:
        check_same_terms(ent, req)
    return ent


def check_grantee(req: GrantRequest, buyer: Organisation | None) -> None:
    """The checks of a new grant before the catalog is asked: a non-empty window, a known
    buyer organisation."""
    if req.valid_until <= req.valid_from:
        raise RuleViolation(
            "valid_until must be after valid_from.", problem="invalid-validity",
            rule="validity-window-not-empty",
        )
    if buyer is None or "buyer" not in buyer.roles:
        raise RuleViolation(
            f"Organisation {req.buyer_org!r} is not a buyer organisation known to access; "
            "entitlements are granted to onboarded buyer organisations.",
            problem="unknown-buyer-organisation",
            rule="entitlement-for-buyer-organisation",
        )


def new_entitlement(req: GrantRequest, version: dict[str, Any]) -> Entitlement:
    """The entitlement a checked grant creates from the pinned catalog version (not yet
    added to a session); raises the grant's refusals (grade, data service, plan, policy)."""
    grade = str(version.get("grade", ""))
    if grade not in GRADES_WITH_DELIVERY:
        raise RuleViolation(
            f"Product {req.product_id} has grade {grade!r}, which allows no delivery.",
            problem="grade-not-deliverable",
            rule="no-delivery-for-restricted-grade",
        )
    audience = str((version.get("delivery") or {}).get("data_service_url") or "").rstrip("/")
    if not audience:
        raise RuleViolation(
            f"Product {req.product_id} v{req.version} names no data service URL; the provider "
            "must publish a version with delivery.data_service_url.",
            problem="no-data-service",
            rule="entitlement-needs-a-data-service",
        )
    plan = find_plan(version, req.plan_id)
    policy = dict(version.get("usage_policy") or {})
    check_usage_policy(policy, req.purpose, req.valid_from, req.valid_until)
    guard = version.get("guardrails") or {}
    quota = req.query_quota if req.query_quota is not None else quota_for(
        plan, req.valid_from, req.valid_until)
    eps = req.epsilon_budget if req.epsilon_budget is not None else (
        plan.get("epsilon") if plan.get("epsilon") is not None else guard.get("epsilon_budget"))
    return Entitlement(
        id=new_entitlement_id(), order_id=req.order_id, buyer_org=req.buyer_org,
        provider_org=str(version.get("provider_org", "")), product_id=req.product_id,
        version=req.version, plan_id=req.plan_id, plan_kind=str(plan.get("kind", "")),
        purpose=req.purpose, audience=audience, grade=grade,
        valid_from=req.valid_from, valid_until=req.valid_until, status=EntitlementStatus.ACTIVE,
        # A product suspended between payment and grant still gets its entitlement
        # (the buyer paid); it just cannot be used until the product is reinstated.
        product_suspended=version.get("status") == "suspended", org_suspended=False,
        query_quota=quota, queries_used=0,
        epsilon_budget=float(eps) if eps is not None else None, epsilon_used=0.0,
        max_rows=guard.get("max_rows"), min_group_size=guard.get("min_group_size"),
        usage_policy=policy, plan=plan,
    )


def granted_details(ent: Entitlement) -> dict[str, Any]:
    """The details of an ``entitlement.granted`` audit event."""
    return {"order_id": ent.order_id, "buyer_org": ent.buyer_org, "provider_org": ent.provider_org,
            "product_id": ent.product_id, "version": ent.version, "plan_id": ent.plan_id,
            "purpose": ent.purpose, "audience": ent.audience,
            "valid_until": ent.valid_until.isoformat()}


async def grant(
    session: AsyncSession, catalog: CatalogClient, req: GrantRequest, actor: Principal
) -> tuple[Entitlement, bool]:
    """Create the entitlement for a paid order; (entitlement, created)."""
    existing = await _existing_for_order(session, req)
    if existing is not None:
        return existing, False
    check_grantee(req, await session.get(Organisation, req.buyer_org))
    ent = new_entitlement(req, await catalog.product_version(req.product_id, req.version))
    try:
        # The add inside the savepoint: added before it, a refused flush ends the whole
        # transaction (SQLAlchemy 2.1), not just the savepoint (test_grant_batch's race).
        async with session.begin_nested():
            session.add(ent)
            await session.flush()
    except IntegrityError:
        # The same order granted concurrently: the first one stands.
        if ent in session:
            session.expunge(ent)
        again = await _existing_for_order(session, req)
        if again is None:
            raise
        return again, False
    await audit(session, "entitlement.granted", subject_type="entitlement", subject_id=ent.id,
                actor=actor, **granted_details(ent))
    return ent, True


# --- reading --------------------------------------------------------------------------

def can_see(principal: Principal, ent: Entitlement) -> bool:
    if principal.has_any(OVERSEERS):
        return True
    org = principal.org_id
    return org is not None and (
        ("buyer" in principal.roles and ent.buyer_org == org)
        or ("provider" in principal.roles and ent.provider_org == org)
    )


async def get_visible(session: AsyncSession, ent_id: str, principal: Principal) -> Entitlement:
    ent = await session.get(Entitlement, ent_id)
    if ent is None or not can_see(principal, ent):
        # The same answer for "absent" and "not yours": ids reveal nothing.
        raise NotFound(
            f"No entitlement {ent_id!r} visible to you. List yours with GET /v1/entitlements.",
            problem="entitlement-not-found",
        )
    return ent


async def list_visible(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    product_id: str | None = None,
    order_id: str | None = None,
    buyer: str | None = None,
    provider: str | None = None,
) -> tuple[list[Entitlement], str | None]:
    stmt = select(Entitlement).order_by(Entitlement.created_at, Entitlement.id)
    if not principal.has_any(OVERSEERS):
        mine = []
        if "buyer" in principal.roles:
            mine.append(Entitlement.buyer_org == principal.org_id)
        if "provider" in principal.roles:
            mine.append(Entitlement.provider_org == principal.org_id)
        if not mine or principal.org_id is None:
            return [], None
        stmt = stmt.where(or_(*mine))
    if product_id:
        stmt = stmt.where(Entitlement.product_id == product_id)
    if order_id:
        stmt = stmt.where(Entitlement.order_id == order_id)
    if buyer:
        stmt = stmt.where(Entitlement.buyer_org == buyer)
    if provider:
        stmt = stmt.where(Entitlement.provider_org == provider)
    position = read_cursor(cursor, lambda p: (datetime.fromisoformat(str(p["t"])), str(p["id"])))
    if position is not None:
        at, last_id = position
        stmt = stmt.where(or_(Entitlement.created_at > at,
                              and_(Entitlement.created_at == at, Entitlement.id > last_id)))
    rows = list(await session.scalars(stmt.limit(limit + 1)))
    return page_of(rows, limit, lambda e: {"t": e.created_at.isoformat(), "id": e.id})


# --- revoking, suspending, reinstating -------------------------------------------------

async def revoke(session: AsyncSession, ent: Entitlement, reason: str, actor: Principal | Actor) -> bool:
    """Revoke for good (refund, regulator); ``False`` if it already was."""
    if ent.status == EntitlementStatus.REVOKED:
        return False
    await revocation.lock_feed(session)  # before the row lock: see revocation.lock_feed
    move(ent, EntitlementStatus.REVOKED)
    ent.status_reason, ent.revoked_at = reason, utcnow()
    await session.flush()
    await revocation.add_entry(session, kind="entitlement", subject_id=ent.id, event="revoked",
                               reason=reason, entitlement_id=ent.id)
    await audit(session, "entitlement.revoked", subject_type="entitlement", subject_id=ent.id,
                actor=actor, reason=reason, order_id=ent.order_id, buyer_org=ent.buyer_org)
    return True


async def revoke_by_order(
    session: AsyncSession, order_id: str, reason: str, actor: Principal
) -> Entitlement:
    ent = await session.scalar(select(Entitlement).where(Entitlement.order_id == order_id))
    if ent is None:
        raise NotFound(
            f"No entitlement was granted for order {order_id!r}; nothing to revoke.",
            problem="entitlement-not-found",
        )
    await revoke(session, ent, reason, actor)
    return ent


def _refuse_if_revoked(ent: Entitlement) -> None:
    if ent.status == EntitlementStatus.REVOKED:
        raise Conflict(
            f"Entitlement {ent.id} is revoked ({ent.status_reason}); a revoked entitlement "
            "cannot be suspended or reinstated. A new order grants a new one.",
            problem="entitlement-revoked",
        )


async def _usable_now(session: AsyncSession, ent: Entitlement) -> bool:
    orgs = await org_statuses(session, (ent.buyer_org, ent.provider_org))
    return effective_status(ent, orgs) == Shown.ACTIVE


async def suspend(session: AsyncSession, ent: Entitlement, reason: str, actor: Principal) -> None:
    _refuse_if_revoked(ent)
    if ent.status == EntitlementStatus.SUSPENDED:
        raise Conflict(f"Entitlement {ent.id} is already suspended.", problem="no-state-change")
    await revocation.lock_feed(session)
    move(ent, EntitlementStatus.SUSPENDED)
    ent.status_reason = reason
    await session.flush()
    await revocation.add_entry(session, kind="entitlement", subject_id=ent.id, event="suspended",
                               reason=reason, entitlement_id=ent.id)
    await audit(session, "entitlement.suspended", subject_type="entitlement", subject_id=ent.id,
                actor=actor, reason=reason, source="entitlement")


async def reinstate(session: AsyncSession, ent: Entitlement, reason: str, actor: Principal) -> None:
    _refuse_if_revoked(ent)
    if ent.status != EntitlementStatus.SUSPENDED:
        raise Conflict(f"Entitlement {ent.id} is not suspended.", problem="no-state-change")
    await revocation.lock_feed(session)
    move(ent, EntitlementStatus.ACTIVE)
    ent.status_reason = reason
    await session.flush()
    # Only a fully usable entitlement is announced as reinstated: another
    # suspension (product, organisation) still holds otherwise.
    if await _usable_now(session, ent):
        await revocation.add_entry(session, kind="entitlement", subject_id=ent.id,
                                   event="reinstated", reason=reason, entitlement_id=ent.id)
    await audit(session, "entitlement.reinstated", subject_type="entitlement", subject_id=ent.id,
                actor=actor, reason=reason, source="entitlement")


async def _flip_flag(
    session: AsyncSession, ent_id: str, flag: str, value: bool
) -> bool:
    """Set ``product_suspended``/``org_suspended`` if it is not already; a
    conditional UPDATE, so two concurrent callers cannot both flip it."""
    column = getattr(Entitlement, flag)
    result = await session.execute(
        update(Entitlement).where(Entitlement.id == ent_id, column.is_(not value))
        .values({flag: value, "updated_at": utcnow()})
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def _open_entitlements(session: AsyncSession, *conditions: Any) -> Sequence[Entitlement]:
    """Entitlements that are not revoked and not expired."""
    return list(await session.scalars(
        select(Entitlement).where(Entitlement.status != EntitlementStatus.REVOKED,
                                  Entitlement.valid_until > utcnow(), *conditions)
        .order_by(Entitlement.id)
    ))


async def set_product_suspension(
    session: AsyncSession, product_id: str, suspended: bool, reason: str, actor: Principal | Actor
) -> list[str]:
    """Suspend or reinstate every open entitlement of a product (pushed by the
    catalog when the product is suspended or relisted); returns the ids changed."""
    changed: list[str] = []
    affected = await _open_entitlements(session, Entitlement.product_id == product_id)
    if affected:
        await revocation.lock_feed(session)
    for ent in affected:
        if not await _flip_flag(session, ent.id, "product_suspended", suspended):
            continue
        await session.refresh(ent)
        changed.append(ent.id)
        if suspended or await _usable_now(session, ent):
            await revocation.add_entry(
                session, kind="entitlement", subject_id=ent.id,
                event="suspended" if suspended else "reinstated", reason=reason,
                entitlement_id=ent.id,
            )
        await audit(session, "entitlement.suspended" if suspended else "entitlement.reinstated",
                    subject_type="entitlement", subject_id=ent.id, actor=actor, reason=reason,
                    source="product", product_id=product_id)
    return changed


async def reconcile_organisation_suspensions(
    session: AsyncSession, org_id: str | None = None, reason: str | None = None,
    actor: Principal | Actor | None = None,
) -> list[str]:
    """Bring ``org_suspended`` (and the feed) in line with the organisations
    table, for one organisation or all; returns the entitlement ids changed.

    Called when an organisation is suspended or reinstated, and before every
    feed read, so the feed is right even if a status change was made without
    calling :func:`on_organisation_status_changed`.
    """
    # Both queries use indexes (buyer/provider org, org_suspended): the feed
    # runs this on every poll, so it must not scan every entitlement.
    suspended_orgs = select(Organisation.id).where(Organisation.status != AccountStatus.ACTIVE)
    scope = [] if org_id is None else [
        or_(Entitlement.buyer_org == org_id, Entitlement.provider_org == org_id)
    ]
    to_suspend = await _open_entitlements(
        session, Entitlement.org_suspended.is_(False),
        or_(Entitlement.buyer_org.in_(suspended_orgs), Entitlement.provider_org.in_(suspended_orgs)),
        *scope,
    )
    to_lift = await _open_entitlements(
        session, Entitlement.org_suspended.is_(True),
        Entitlement.buyer_org.not_in(suspended_orgs), Entitlement.provider_org.not_in(suspended_orgs),
        *scope,
    )
    stale = [*to_suspend, *to_lift]
    changed: list[str] = []
    if stale:
        await revocation.lock_feed(session)
    for ent in stale:
        now_suspended = not ent.org_suspended
        if not await _flip_flag(session, ent.id, "org_suspended", now_suspended):
            continue  # another request reconciled it first
        await session.refresh(ent)
        changed.append(ent.id)
        why = reason or ("organisation suspended" if now_suspended else "organisation reinstated")
        if now_suspended or await _usable_now(session, ent):
            await revocation.add_entry(
                session, kind="entitlement", subject_id=ent.id,
                event="suspended" if now_suspended else "reinstated", reason=why,
                entitlement_id=ent.id,
            )
        await audit(session,
                    "entitlement.suspended" if now_suspended else "entitlement.reinstated",
                    subject_type="entitlement", subject_id=ent.id,
                    actor=actor or Actor(sub="access"), reason=why, source="organisation",
                    organisation_id=org_id)
    return changed


async def on_organisation_status_changed(
    session: AsyncSession, org_id: str, status: str, reason: str | None = None,
    actor: Principal | Actor | None = None,
) -> list[str]:
    """Call in the transaction that changes an organisation's status (after the
    change is flushed): suspends or reinstates the entitlements it buys or
    provides, adds feed entries and audit events; returns the ids changed."""
    why = f"organisation {org_id} {'suspended' if status != AccountStatus.ACTIVE else 'reinstated'}"
    if reason:
        why += f": {reason}"
    return await reconcile_organisation_suspensions(session, org_id, why, actor)
