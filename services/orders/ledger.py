"""Append-only ledger: what each paid order moved, and per-currency totals.

Entries are only inserted (the database refuses UPDATE and DELETE on the table).
A paid order books three entries: ``charge`` (the gross the buyer paid, account
``gross``), ``platform_fee`` (account ``platform``) and ``provider_earning``
(account ``provider``); fee + earning = charge, always. A refund books a
``refund_reversal`` of each with the opposite sign, so the sums per currency are
the money that really stayed where it is.
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


def _entries(order: Order, kind: str, sign: int) -> list[LedgerEntry]:
    now = utcnow()
    return [
        LedgerEntry(order_id=order.id, kind=k, account=account, buyer_org=order.buyer_org,
                    provider_org=order.provider_org, currency=order.currency,
                    amount=sign * amount, created_at=now)
        for k, account, amount in (
            (kind if sign < 0 else "charge", "gross", order.gross),
            (kind if sign < 0 else "platform_fee", "platform", order.platform_fee),
            (kind if sign < 0 else "provider_earning", "provider", order.provider_share),
        )
    ]


async def book_payment(session: AsyncSession, order: Order) -> None:
    """In the transaction that makes the order ``paid``; free orders move no money."""
    if order.gross > 0:
        session.add_all(_entries(order, "charge", +1))
        await session.flush()


async def book_refund(session: AsyncSession, order: Order) -> None:
    """In the transaction that makes the order ``refunded``."""
    if order.gross > 0:
        session.add_all(_entries(order, "refund_reversal", -1))
        await session.flush()


def _totals_query(provider_org: str | None) -> Select[Any]:
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
    return stmt


async def totals(session: AsyncSession, *, provider_org: str | None = None) -> list[CurrencyTotals]:
    rows = (await session.execute(_totals_query(provider_org))).all()
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
