"""Usage records and the quota/epsilon ledger (no FastAPI here).

Data services enforce limits first with their own counters; this is the
authoritative ledger. Each record decrements the entitlement's counters with
one conditional UPDATE (``... WHERE queries_used + 1 <= quota AND
epsilon_used + :eps <= budget``), so concurrent reports can never overspend:
on PostgreSQL the row lock makes the second writer re-evaluate the condition
against the first one's result; SQLite has one writer at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.access.audit_events import audit
from services.access.data_tokens import EPSILON_SLACK
from services.access.entitlements import OVERSEERS
from services.access.models import Entitlement, UsageRecord
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.pagination import exact_int, page_of, read_cursor


@dataclass(frozen=True)
class UsageReport:
    usage_id: str
    entitlement_id: str
    jti: str
    product_id: str
    rows_returned: int
    suppressed_groups: int
    epsilon_spent: float
    occurred_at: datetime


class _OverLimit(Exception):
    """Raised inside the savepoint so the decrement and the insert roll back together."""


def _not_found(ent_id: str) -> NotFound:
    return NotFound(
        f"No entitlement {ent_id!r} for a product of yours; usage can only be reported for "
        "entitlements of your own products.",
        problem="entitlement-not-found",
    )


def _same_report(rec: UsageRecord, report: UsageReport) -> bool:
    return (rec.entitlement_id, rec.jti, rec.rows_returned) == (
        report.entitlement_id, report.jti, report.rows_returned
    ) and abs(rec.epsilon_spent - report.epsilon_spent) <= EPSILON_SLACK


async def _existing(session: AsyncSession, report: UsageReport) -> UsageRecord | None:
    rec = await session.scalar(select(UsageRecord).where(UsageRecord.usage_id == report.usage_id))
    if rec is not None and not _same_report(rec, report):
        raise Conflict(
            f"usage_id {report.usage_id} was already recorded with different values; use a new "
            "usage_id for each query.",
            problem="usage-id-reused",
        )
    return rec


def _within_limits(eps: float) -> list[ColumnElement[bool]]:
    conditions = [or_(Entitlement.query_quota.is_(None),
                      Entitlement.queries_used + 1 <= Entitlement.query_quota)]
    if eps > 0:
        conditions.append(or_(
            Entitlement.epsilon_budget.is_(None),
            Entitlement.epsilon_used + eps <= Entitlement.epsilon_budget + EPSILON_SLACK,
        ))
    return conditions


async def record(
    session: AsyncSession, report: UsageReport, reporter: Principal
) -> tuple[UsageRecord, bool]:
    """Record one query; (record, created). A repeat returns the stored record."""
    ent = await session.get(Entitlement, report.entitlement_id)
    if ent is None or (
        "service" not in reporter.roles and ent.provider_org != reporter.org_id
    ):
        raise _not_found(report.entitlement_id)
    if report.product_id != ent.product_id:
        raise RuleViolation(
            f"Entitlement {ent.id} is for product {ent.product_id}, not {report.product_id}.",
            problem="product-mismatch",
            rule="usage-matches-entitlement",
        )
    existing = await _existing(session, report)
    if existing is not None:
        return existing, False
    eps = report.epsilon_spent
    rec: UsageRecord | None = None
    try:
        async with session.begin_nested():
            result = await session.execute(
                update(Entitlement)
                .where(Entitlement.id == ent.id, *_within_limits(eps))
                .values(queries_used=Entitlement.queries_used + 1,
                        epsilon_used=Entitlement.epsilon_used + eps)
                .returning(Entitlement.queries_used)
                .execution_options(synchronize_session=False)
            )
            number = result.scalar_one_or_none()
            if number is None:
                raise _OverLimit
            rec = UsageRecord(
                usage_id=report.usage_id, entitlement_id=ent.id, jti=report.jti,
                product_id=ent.product_id, version=ent.version, plan_id=ent.plan_id,
                plan_kind=ent.plan_kind, buyer_org=ent.buyer_org, provider_org=ent.provider_org,
                query_number=number, rows_returned=report.rows_returned,
                suppressed_groups=report.suppressed_groups, epsilon_spent=eps,
                occurred_at=report.occurred_at, recorded_at=utcnow(),
                reported_by=reporter.client_id,
            )
            session.add(rec)
            await session.flush()
    except _OverLimit:
        await session.refresh(ent)
        raise Conflict(
            f"Recording this query would exceed entitlement {ent.id}'s limits (queries "
            f"{ent.queries_used}/{ent.query_quota if ent.query_quota is not None else 'unlimited'}, "
            f"epsilon {ent.epsilon_used:g}+{eps:g} of "
            f"{ent.epsilon_budget if ent.epsilon_budget is not None else 'unlimited'}); it was not "
            "recorded. The data service must refuse queries beyond the token's limits; do not "
            "retry this report.",
            problem="usage-exceeds-limits",
            queries_used=ent.queries_used, query_quota=ent.query_quota,
            epsilon_used=ent.epsilon_used, epsilon_budget=ent.epsilon_budget,
        ) from None
    except IntegrityError:
        # The same usage_id reported concurrently: the savepoint undid our
        # decrement; the other report stands.
        if rec is not None and rec in session:
            session.expunge(rec)
        again = await _existing(session, report)
        if again is None:
            raise
        return again, False
    await session.refresh(ent)
    await audit(session, "usage.recorded", subject_type="entitlement", subject_id=ent.id,
                actor=reporter, usage_id=report.usage_id, jti=report.jti,
                rows_returned=report.rows_returned, epsilon_spent=eps,
                query_number=rec.query_number)
    if ent.query_quota is not None and ent.queries_used == ent.query_quota:
        # Never silently: the last allowed query is an audited event (a spending cap or a
        # bundle used up), and token requests from now on say why they are refused.
        await audit(session, "entitlement.quota_reached", subject_type="entitlement",
                    subject_id=ent.id, actor=reporter, query_quota=ent.query_quota,
                    spend_cap=ent.spend_cap, buyer_org=ent.buyer_org)
    return rec, True


async def list_visible(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    entitlement_id: str | None,
) -> tuple[list[UsageRecord], str | None]:
    stmt = select(UsageRecord).order_by(UsageRecord.seq)
    if not principal.has_any(OVERSEERS):
        mine = []
        if "buyer" in principal.roles:
            mine.append(UsageRecord.buyer_org == principal.org_id)
        if "provider" in principal.roles:
            mine.append(UsageRecord.provider_org == principal.org_id)
        if not mine or principal.org_id is None:
            return [], None
        stmt = stmt.where(or_(*mine))
    if entitlement_id:
        stmt = stmt.where(UsageRecord.entitlement_id == entitlement_id)
    seq = read_cursor(cursor, lambda p: exact_int(p["seq"]))
    if seq is not None:
        stmt = stmt.where(UsageRecord.seq > seq)
    rows = list(await session.scalars(stmt.limit(limit + 1)))
    return page_of(rows, limit, lambda r: {"seq": r.seq})
