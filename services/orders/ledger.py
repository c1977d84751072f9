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

    @property
    def reconciles(self) -> bool:
        return self.gross == self.platform_fees + self.provider_earnings


def _entry(order: Order, kind: str, account: str, amount: int, ref: str = "") -> LedgerEntry:
    return LedgerEntry(order_id=order.id, kind=kind, account=account, buyer_org=order.buyer_org,
                       provider_org=order.provider_org, currency=order.currency, amount=amount,
                       ref=ref, created_at=utcnow())


async def book_payment(session: AsyncSession, order: Order) -> None:
    """In the transaction that makes the order ``paid``; free orders move no money."""
    if order.gross > 0:
        session.add_all([_entry(order, "charge", "gross", order.gross),
                         _entry(order, "platform_fee", "platform", order.platform_fee),
                         _entry(order, "provider_earning", "provider", order.provider_share)])
        await session.flush()


def _cumulative(part: int, gross: int, refunded: int) -> int:
    """How much of ``part`` is reversed once ``refunded`` of ``gross`` is given back (half up)."""
    return (2 * part * refunded + gross) // (2 * gross)


def reversal_split(order: Order, amount: int, refunded_before: int) -> dict[str, int]:
    """What one refund of ``amount`` reverses per account, given what was refunded before.

    Each account's reversals add up to its share of the total refunded so far, so a
    sequence of partial refunds that ends in a full one reverses every account exactly,
    and no account is ever reversed below zero."""
    after = refunded_before + amount
    if not 0 < amount or after > order.gross:
        raise ValueError("a refund must be positive and within what was paid")
    fee = (_cumulative(order.platform_fee, order.gross, after)
           - _cumulative(order.platform_fee, order.gross, refunded_before))
    return {"gross": amount, "platform": fee, "provider": amount - fee}


async def book_refund(session: AsyncSession, order: Order, refund_id: str, amount: int,
                      refunded_before: int) -> None:
    """In the transaction that records a refund as succeeded (full or partial)."""
    split = reversal_split(order, amount, refunded_before)
    session.add_all([_entry(order, "refund_reversal", account, -value, ref=refund_id)
                     for account, value in split.items()])
    await session.flush()


def _totals_query(provider_org: str | None, order_id: str | None) -> Select[Any]:
    amount = LedgerEntry.amount
    stmt = select(
        LedgerEntry.currency,
        func.coalesce(func.sum(case((LedgerEntry.account == "gross", amount), else_=0)), 0),
        func.coalesce(func.sum(case((LedgerEntry.account == "platform", amount), else_=0)), 0),
        func.coalesce(func.sum(case((LedgerEntry.account == "provider", amount), else_=0)), 0),
        func.coalesce(func.sum(case(
            ((LedgerEntry.account == "gross") & (LedgerEntry.kind == "refund_reversal"), -amount),
            else_=0)), 0),
        func.count(func.distinct(LedgerEntry.order_id)),
    ).group_by(LedgerEntry.currency).order_by(LedgerEntry.currency)
    if provider_org is not None:
        stmt = stmt.where(LedgerEntry.provider_org == provider_org)
    if order_id is not None:
        stmt = stmt.where(LedgerEntry.order_id == order_id)
    return stmt


async def totals(session: AsyncSession, *, provider_org: str | None = None,
                 order_id: str | None = None) -> list[CurrencyTotals]:
    rows = (await session.execute(_totals_query(provider_org, order_id))).all()
    return [CurrencyTotals(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


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
