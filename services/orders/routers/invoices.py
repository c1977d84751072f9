"""``/v1/invoices``: invoices and receipts of paid orders, as JSON and printable HTML."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import invoices
from services.orders.billing_schemas import InvoiceDocument
from services.orders.models import Invoice
from services.orders.orders import parties_filter
from shared.auth import Principal, require_roles
from shared.db import DbSession
from shared.errors import NotFound
from shared.pagination import CursorParam, LimitParam, Page, exact_int, page_of, read_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])
Reader = Annotated[Principal, Depends(require_roles("buyer", "provider", "regulator", "operator"))]


def _visible(principal: Principal) -> Any:
    """Buyers see the invoices they paid, providers those of their sales, overseers all."""
    return parties_filter(principal, Invoice.buyer_org, Invoice.provider_org)


async def _find(session: AsyncSession, principal: Principal, number: str) -> invoices.InvoiceView:
    wanted = invoices.parse_number(number)
    stmt = select(Invoice).where(Invoice.number == (wanted or -1))
    where = _visible(principal)
    if where is not None:
        stmt = stmt.where(where)
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No invoice {number} that you can see; list yours with GET /v1/invoices.",
                       problem="invoice-not-found")
    return await invoices.view(session, found)


@router.get("", response_model=Page[InvoiceDocument], summary="List the invoices you may see, newest first",
            description="One per paid order (purchases, subscription periods, plan upgrades), with its "
            "refunds as credit notes. Filter with `order_id`.", responses=problem_docs(400, 401, 403))
async def list_invoices(session: DbSession, principal: Reader, limit: LimitParam = 50,
                        cursor: CursorParam = None, order_id: str | None = None) -> Page[InvoiceDocument]:
    stmt = select(Invoice).order_by(Invoice.number.desc())
    where = _visible(principal)
    if where is not None:
        stmt = stmt.where(where)
    if order_id:
        stmt = stmt.where(Invoice.order_id == order_id)
    before = read_cursor(cursor, lambda p: exact_int(p["before"]))
    if before is not None:
        stmt = stmt.where(Invoice.number < before)
    rows, nxt = page_of(list((await session.execute(stmt.limit(limit + 1))).scalars()), limit,
                        lambda i: {"before": i.number})
    return Page(items=[InvoiceDocument(**(await invoices.view(session, i)).as_dict()) for i in rows],
                next_cursor=nxt)


@router.get("/{number}", response_model=InvoiceDocument, summary="Get one invoice as JSON",
            responses=problem_docs(401, 403, 404))
async def get_invoice(number: str, session: DbSession, principal: Reader) -> InvoiceDocument:
    return InvoiceDocument(**(await _find(session, principal, number)).as_dict())


@router.get("/{number}/html", response_class=HTMLResponse, summary="Get one invoice as printable HTML",
            description="Open it in a browser and print it (or save it as PDF).",
            responses={200: {"content": {"text/html": {}}}, **problem_docs(401, 403, 404)})
async def get_invoice_html(number: str, session: DbSession, principal: Reader) -> HTMLResponse:
    return HTMLResponse(invoices.render_html(await _find(session, principal, number)))
