"""``/v1/ledger`` (regulators, operators) and ``/v1/providers/me/earnings`` (providers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.orders import ledger
from services.orders.schemas import CurrencyTotal, Earnings, LedgerPage, entry_out
from shared.auth import Provider, Regulator
from shared.db import DbSession
from shared.errors import RuleViolation
from shared.pagination import CursorParam, LimitParam, encode_cursor, read_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["ledger"])


def _after(cursor: str | None) -> int | None:
    return read_cursor(cursor, lambda p: int(p["after"]))


def _totals(rows: list[ledger.CurrencyTotals]) -> list[CurrencyTotal]:
    return [CurrencyTotal(currency=t.currency, gross=t.gross, platform_fees=t.platform_fees,
                          provider_earnings=t.provider_earnings, refunded=t.refunded, orders=t.orders,
                          tax=t.tax, paid_out=t.paid_out, reconciles=t.reconciles) for t in rows]


@router.get(
    "/ledger", response_model=LedgerPage, summary="The whole ledger with totals per currency "
    "(regulator or operator)",
    description="Entries oldest first (cursor pagination) and, on every page, the totals per currency "
    "over the whole ledger (or over one order with `order_id`).",
    responses=problem_docs(400, 401, 403),
)
async def get_ledger(
    session: DbSession, _: Regulator, limit: LimitParam = 100, cursor: CursorParam = None,
    order_id: Annotated[str | None, Query(max_length=40)] = None,
) -> LedgerPage:
    rows = await ledger.list_entries(session, limit=limit, after_id=_after(cursor), order_id=order_id)
    nxt = encode_cursor({"after": rows[limit - 1].id}) if len(rows) > limit else None
    return LedgerPage(totals=_totals(await ledger.totals(session, order_id=order_id)),
                      items=[entry_out(e) for e in rows[:limit]], next_cursor=nxt)


@router.get(
    "/providers/me/earnings", response_model=Earnings,
    summary="Your organisation's earnings per currency and its ledger entries (provider)",
    responses=problem_docs(400, 401, 403, 422),
)
async def my_earnings(
    session: DbSession, provider: Provider, limit: LimitParam = 100, cursor: CursorParam = None
) -> Earnings:
    if not provider.org_id:
        raise RuleViolation("Your token has no organisation (org claim).", rule="provider-organisation")
    rows = await ledger.list_entries(session, limit=limit, after_id=_after(cursor),
                                     provider_org=provider.org_id)
    nxt = encode_cursor({"after": rows[limit - 1].id}) if len(rows) > limit else None
    return Earnings(provider_org=provider.org_id,
                    totals=_totals(await ledger.totals(session, provider_org=provider.org_id)),
                    items=[entry_out(e) for e in rows[:limit]], next_cursor=nxt)
