"""Append-only ledger: what each paid order moved, and per-currency totals.

Entries are only inserted (the database refuses UPDATE and DELETE on the table).
A paid order books three entries: ``charge`` (the gross the buyer paid, account
``gross``), ``platform_fee`` (account ``platform``) and ``provider_earning``
(account ``provider``); fee + earning = charge, always. Each refund (full or
partial) books a ``refund_reversal`` of each with the opposite sign and the
refund's id as ``ref``, split in proportion to what has been refunded so far
(:func:`reversal_split`), so the sums per currency are the money that really
stayed where it is, and a full refund reverses every account exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.models import LedgerEntry, Order
from shared.db import utcnow


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    gross: int  # charged minus refunded
    platform_fees: int
    provider_earnings: int
    refunded: int
    orders: int
    tax: int = 0
    paid_out: int = 0

    @property
    def reconciles(self) -> bool:
        return self.gross == self.platform_fees + self.provider_earnings + self.tax


def _entry(order: Order, kind: str, account: str, amount: int, ref: str = "") -> LedgerEntry:
    return LedgerEntry(order_id=order.id, kind=kind, account=account, buyer_org=order.buyer_org,
                       provider_org=order.provider_org, currency=order.currency, amount=amount,
                       ref=ref, created_at=utcnow())


async def book_payment(session: AsyncSession, order: Order) -> None:
    """In the transaction that makes the order ``paid``; free orders move no money.
    VAT (account ``tax``) is booked only when there is some."""
    if order.gross > 0:
        entries = [_entry(order, "charge", "gross", order.gross),
                   _entry(order, "platform_fee", "platform", order.platform_fee),
                   _entry(order, "provider_earning", "provider", order.provider_share)]
        if order.tax:
            entries.append(_entry(order, "tax", "tax", order.tax))
        session.add_all(entries)
        await session.flush()


def _cumulative(part: int, gross: int, refunded: int) -> int:
    """How much of ``part`` is reversed once ``refunded`` of ``gross`` is given back (half up)."""
    return (2 * part * refunded + gross) // (2 * gross)


def reversal_split(order: Order, amount: int, reversed_before: dict[str, int]) -> dict[str, int]:
    """What one refund of ``amount`` reverses per account, given what earlier refunds
    reversed (positive amounts per account).

    VAT and the fee aim at their share of everything refunded so far (rounded half up),
    the provider takes the rest; no account is ever reversed beyond what it received,
    no reversal is positive, they add up to ``amount``, and a sequence of refunds that
    ends in a full one reverses every account exactly."""
    parts = {"tax": order.tax, "platform": order.platform_fee, "provider": order.provider_share}
    before = {k: reversed_before.get(k, 0) for k in parts}
    after = sum(before.values()) + amount
    if amount <= 0 or after > order.gross:
        raise ValueError("a refund must be positive and within what was paid")
    room = {k: parts[k] - before[k] for k in parts}
    split, left = {}, amount
    for account in ("tax", "platform"):
        aim = _cumulative(parts[account], order.gross, after) - before[account]
        split[account] = max(0, min(aim, room[account], left))
        left -= split[account]
    split["provider"] = min(left, room["provider"])
    left -= split["provider"]
    for account in ("tax", "platform"):  # the provider's share is used up: the rest goes here
        more = min(left, room[account] - split[account])
        split[account] += more
        left -= more
    assert left == 0
    return {"gross": amount, **{k: v for k, v in split.items() if k != "tax" or order.tax}}


async def reversed_so_far(session: AsyncSession, order_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(LedgerEntry.account, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.order_id == order_id, LedgerEntry.kind == "refund_reversal")
        .group_by(LedgerEntry.account))
    return {str(account): -int(total) for account, total in rows}


async def book_refund(session: AsyncSession, order: Order, refund_id: str, amount: int) -> None:
    """In the transaction that records a refund as succeeded (full or partial)."""
    split = reversal_split(order, amount, await reversed_so_far(session, order.id))
    session.add_all([_entry(order, "refund_reversal", account, -value, ref=refund_id)
                     for account, value in split.items()])
    await session.flush()


PAYOUT = "payout"


def _totals_query(provider_org: str | None, order_id: str | None) -> Select[Any]:
    amount = LedgerEntry.amount
    sales = LedgerEntry.kind != PAYOUT

    def total(condition: Any, value: Any = amount) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    stmt = select(
        LedgerEntry.currency,
        total(LedgerEntry.account == "gross"),
        total(LedgerEntry.account == "platform"),
        total((LedgerEntry.account == "provider") & sales),
        total((LedgerEntry.account == "gross") & (LedgerEntry.kind == "refund_reversal"), -amount),
        func.count(func.distinct(case((sales, LedgerEntry.order_id), else_=None))),
        total(LedgerEntry.account == "tax"),
        total(LedgerEntry.account == PAYOUT),
    ).group_by(LedgerEntry.currency).order_by(LedgerEntry.currency)
    if provider_org is not None:
        stmt = stmt.where(LedgerEntry.provider_org == provider_org)
    if order_id is not None:
        stmt = stmt.where(LedgerEntry.order_id == order_id)
    return stmt


async def totals(session: AsyncSession, *, provider_org: str | None = None,
                 order_id: str | None = None) -> list[CurrencyTotals]:
    rows = (await session.execute(_totals_query(provider_org, order_id))).all()
    return [CurrencyTotals(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                           int(r[7])) for r in rows]


async def list_entries(
    session: AsyncSession, *, limit: int, after_id: int | None, provider_org: str | None = None,
    order_id: str | None = None,
) -> list[LedgerEntry]:
    stmt = select(LedgerEntry).order_by(LedgerEntry.id).limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(LedgerEntry.id > after_id)
    if provider_org is not None:
        stmt = stmt.where(LedgerEntry.provider_org == provider_org)
    if order_id is not None:
        stmt = stmt.where(LedgerEntry.order_id == order_id)
    return list((await session.execute(stmt)).scalars().all())
