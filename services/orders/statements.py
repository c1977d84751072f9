"""Provider settlement statements, payouts, and the buyer's and provider's money views,
all read from the ledger (no FastAPI here).

**Payouts.** Stripe Connect (transfers to connected accounts) is not in localstripe, so a
payout is modelled in the ledger: two entries of kind ``payout`` on the payout's id —
``provider`` −amount (the provider's balance goes down) and ``payout`` +amount (money that
left the platform) — beside a Stripe ``Payout`` object where Stripe can make one (localstripe:
EUR only; other currencies are ``recorded`` in the ledger alone). A payout is decided first
(its row, unique per provider, currency and month) and booked when Stripe answers, so a
repeated request finishes the same payout and never pays twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders.ledger import PAYOUT
from services.orders.locking import locked
from services.orders.models import LedgerEntry, Order, Payout
from services.orders.pricing import currency_exponent
from services.orders.stripe_billing import BillingGateway
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import RuleViolation
from shared.events import Actor
from shared.outbox import record_event

GROUPS = ("period", "product", "plan")


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a UTC month given as YYYY-MM."""
    try:
        year, month = (int(part) for part in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise RuleViolation(f"period {period!r} is not a month (YYYY-MM).", rule="period-month") from None
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _sum(condition: Any, value: Any = LedgerEntry.amount) -> Any:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


@dataclass(frozen=True)
class StatementLine:
    currency: str
    sales: int
    refunds: int
    tax: int
    platform_fees: int
    earnings: int
    paid_out: int
    balance: int
    orders: int


async def statement(session: AsyncSession, provider_org: str, period: str) -> list[StatementLine]:
    """What a provider sold, gave back and earned in one month, per currency, and its balance."""
    start, end = month_bounds(period)
    entry = LedgerEntry
    sales = entry.kind != PAYOUT
    in_period = (entry.created_at >= start) & (entry.created_at < end)
    rows = (await session.execute(
        select(entry.currency,
               _sum(in_period & (entry.kind == "charge")),
               _sum(in_period & (entry.kind == "refund_reversal") & (entry.account == "gross"),
                    -entry.amount),
               _sum(in_period & (entry.account == "tax")),
               _sum(in_period & (entry.account == "platform")),
               _sum(in_period & (entry.account == "provider") & sales),
               _sum(in_period & (entry.account == PAYOUT)),
               _sum((entry.created_at < end) & (entry.account == "provider")),
               func.count(func.distinct(case((in_period & sales, entry.order_id), else_=None))))
        .where(entry.provider_org == provider_org).group_by(entry.currency).order_by(entry.currency)
    )).all()
    return [StatementLine(str(r[0]), *(int(v) for v in r[1:])) for r in rows]


async def payouts_of(session: AsyncSession, provider_org: str | None,
                     period: str | None = None) -> list[Payout]:
    stmt = select(Payout).order_by(Payout.created_at)
    if provider_org is not None:
        stmt = stmt.where(Payout.provider_org == provider_org)
    if period is not None:
        stmt = stmt.where(Payout.period == period)
    return list((await session.execute(stmt)).scalars())


async def _balance_owed(session: AsyncSession, provider_org: str, currency: str, end: datetime) -> int:
    """Earnings booked before ``end`` minus every payout made so far."""
    entry = LedgerEntry
    row = (await session.execute(
        select(_sum((entry.account == "provider") & (entry.kind != PAYOUT) & (entry.created_at < end)),
               _sum(entry.account == PAYOUT))
        .where(entry.provider_org == provider_org, entry.currency == currency))).one()
    return int(row[0]) - int(row[1])


def _payout_of(provider_org: str, currency: str, period: str) -> Select[Payout]:
    return select(Payout).where(Payout.provider_org == provider_org, Payout.currency == currency,
                                Payout.period == period)


async def decide_payout(session: AsyncSession, operator: Principal, provider_org: str, currency: str,
                        period: str) -> Payout:
    """Step 1: the payout of a closed month's balance (or the one already decided)."""
    currency = currency.upper()
    currency_exponent(currency)
    _, end = month_bounds(period)
    if end > utcnow():
        raise RuleViolation(f"Month {period} has not ended; pay out a closed month.", rule="period-closed")
    existing = (await session.execute(_payout_of(provider_org, currency, period))).scalar_one_or_none()
    if existing is not None:
        return existing
    amount = await _balance_owed(session, provider_org, currency, end)
    if amount <= 0:
        raise RuleViolation(f"{provider_org} has no {currency} balance to pay out for {period} "
                            f"(it is {amount}).",
                            rule="payout-positive-balance", balance=amount)
    actor = Actor(sub=operator.subject, org=operator.org_id, role="operator")
    payout = Payout(id="po_" + secrets.token_hex(12), provider_org=provider_org, currency=currency,
                    period=period, amount=amount, status="pending", created_by=actor.model_dump(),
                    created_at=utcnow())
    try:
        # Added inside the savepoint: added before it, a refused flush ends the whole
        # transaction, not just the savepoint, and the read below fails (a 500).
        async with session.begin_nested():
            session.add(payout)
            await session.flush()
    except IntegrityError:  # decided concurrently: the first one stands (the savepoint's
        # rollback has already expunged ours)
        return (await session.execute(_payout_of(provider_org, currency, period))).scalar_one()
    return payout


async def book_payout(session: AsyncSession, payout_id: str, stripe_payout_id: str | None) -> Payout:
    """Step 3: the ledger entries and the audit event, once."""
    payout = await locked(session, Payout, payout_id)
    assert payout is not None
    if payout.status != "pending":
        return payout
    now = utcnow()
    for account, amount in (("provider", -payout.amount), (PAYOUT, payout.amount)):
        session.add(LedgerEntry(order_id=payout.id, kind=PAYOUT, account=account, buyer_org="",
                                provider_org=payout.provider_org, currency=payout.currency, amount=amount,
                                ref="", created_at=now))
    payout.status = "paid" if stripe_payout_id else "recorded"
    payout.stripe_payout_id = stripe_payout_id
    await session.flush()
    await record_event(session, service="orders", action="orders.payout.paid", subject_type="payout",
                       subject_id=payout.id, actor=Actor(**payout.created_by),
                       details={"provider_org": payout.provider_org, "currency": payout.currency,
                                "period": payout.period, "amount": payout.amount,
                                "stripe_payout_id": stripe_payout_id, "status": payout.status})
    return payout


async def stripe_payout(billing: BillingGateway, payout: Payout) -> str | None:
    """Step 2: the Stripe Payout, where Stripe can make one."""
    return await billing.create_payout(amount=payout.amount, currency=payout.currency, payout_id=payout.id,
                                       provider_org=payout.provider_org)


async def pay_out(sessionmaker: async_sessionmaker[AsyncSession], billing: BillingGateway,
                  operator: Principal,
                  provider_org: str, currency: str, period: str) -> tuple[Payout, bool]:
    """Decide, pay at Stripe, book; (the payout, made now). Two commits on purpose: the
    decision must stand before Stripe is asked, so a repeat finishes the same payout."""
    async with sessionmaker() as s, s.begin():
        payout = await decide_payout(s, operator, provider_org, currency, period)
    if payout.status != "pending":
        return payout, False
    stripe_id = await stripe_payout(billing, payout)
    async with sessionmaker() as s, s.begin():
        return await book_payout(s, payout.id, stripe_id), True


# --- the buyer's and provider's views --------------------------------------------------------

def _month(session: AsyncSession) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", LedgerEntry.created_at), "YYYY-MM")
    return func.strftime("%Y-%m", LedgerEntry.created_at)


def _summary_query(session: AsyncSession, group_by: list[str]) -> tuple[Select[Any], list[str]]:
    entry = LedgerEntry
    keys = {"period": _month(session).label("period"), "product": Order.product_id.label("product_id"),
            "plan": Order.plan_id.label("plan_id")}
    chosen = [keys[g] for g in group_by]
    stmt = select(*chosen, entry.currency,
                  _sum(entry.kind == "charge"),
                  _sum((entry.kind == "refund_reversal") & (entry.account == "gross"), -entry.amount),
                  _sum(entry.account == "tax"), _sum(entry.account == "platform"),
                  _sum(entry.account == "provider"),
                  func.count(func.distinct(entry.order_id)))
    stmt = stmt.join(Order, Order.id == entry.order_id).where(entry.kind != PAYOUT)
    stmt = stmt.group_by(*chosen, entry.currency).order_by(*chosen, entry.currency)
    return stmt, [c.key for c in chosen]


async def summary(session: AsyncSession, *, group_by: list[str], buyer_org: str | None = None,
                  provider_org: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[dict[str, Any]]:
    """Money by period (UTC month), product and plan, per currency, from the ledger."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown:
        raise RuleViolation(f"group_by takes {', '.join(GROUPS)}; not {', '.join(unknown)}.", rule="group-by")
    stmt, names = _summary_query(session, group_by)
    if buyer_org is not None:
        stmt = stmt.where(LedgerEntry.buyer_org == buyer_org)
    if provider_org is not None:
        stmt = stmt.where(LedgerEntry.provider_org == provider_org)
    if since is not None:
        stmt = stmt.where(LedgerEntry.created_at >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.created_at < until)
    out = []
    for row in (await session.execute(stmt)).all():
        keys = dict(zip(names, row[:len(names)], strict=True))
        charged, refunded, tax, fees, earnings, orders = (int(v) for v in row[len(names) + 1:])
        out.append({**keys, "currency": row[len(names)], "charged": charged, "refunded": refunded, "tax": tax,
                    "platform_fees": fees, "provider_earnings": earnings, "net": charged - refunded,
                    "orders": orders})
    return out
