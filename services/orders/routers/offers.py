"""``/v1/offers``: private offers from a provider to one named buyer organisation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from services.orders import billing, offers
from services.orders.billing_schemas import Offer, OfferCreate, offer_out
from services.orders.context import OrdersContext
from services.orders.listing import newest_first, next_page
from services.orders.models import Offer as OfferRow
from services.orders.quotes import require_listed
from services.orders.runtime import Ctx
from shared.auth import Principal, Provider, require_roles
from shared.db import DbSession
from shared.errors import NotFound, RuleViolation
from shared.pagination import CursorParam, LimitParam, Page
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/offers", tags=["offers"])
Reader = Annotated[Principal, Depends(require_roles("buyer", "provider", "regulator", "operator"))]



async def _require_buyer(ctx: OrdersContext, buyer_org: str) -> None:
    """Offers go to onboarded, active buyer organisations only (asked of access)."""
    org = await billing.access_client(ctx).organisation(buyer_org)
    if org is None or "buyer" not in (org.get("roles") or []) or org.get("status") != "active":
        raise RuleViolation(f"{buyer_org} is not an active buyer organisation; an offer goes to one.",
                            rule="offer-to-buyer")


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Offer,
    summary="Offer one of your plans at custom terms to one buyer organisation (provider)",
    description="The offer starts from a plan of the product's version (the latest unless `version` is "
    "given) with the changes in `terms`; only `buyer_org` sees it and can quote it (`POST /v1/quotes` with "
    "`offer_id`), once, until it expires (`valid_days`) or you withdraw it. Refused (422) when `buyer_org` "
    "is not an active buyer organisation or the terms cannot be priced.",
    responses=problem_docs(401, 403, 404, 422, 503),
)
async def create_offer(body: OfferCreate, ctx: Ctx, session: DbSession, provider: Provider) -> Offer:
    if not provider.org_id:
        raise RuleViolation("Your token has no organisation (org claim).", rule="provider-organisation")
    version_no = body.version
    if version_no is None:
        latest = await ctx.catalog.product_version(body.product_id, 1)
        version_no = int(latest.get("latest_version") or 1)
    version = await ctx.catalog.product_version(body.product_id, version_no)
    if version.get("provider_org") != provider.org_id:
        raise NotFound(f"No product {body.product_id} of your organisation.", problem="product-not-found")
    require_listed(version)
    await _require_buyer(ctx, body.buyer_org)
    offer = await offers.create(session, provider, version=version, base_plan_id=body.plan_id,
                                buyer_org=body.buyer_org, terms=body.terms, note=body.note,
                                valid_days=body.valid_days)
    return offer_out(offer)


@router.get("", response_model=Page[Offer], summary="List offers you may see",
            description="Providers see the offers they made, buyers those made to their organisation, "
            "regulators and operators all. Newest first.", responses=problem_docs(400, 401, 403))
async def list_offers(session: DbSession, principal: Reader, limit: LimitParam = 50,
                      cursor: CursorParam = None) -> Page[Offer]:
    stmt = newest_first(select(OfferRow), OfferRow.created_at, OfferRow.id, cursor)
    where = offers.visibility(principal)
    if where is not None:
        stmt = stmt.where(where)
    rows, nxt = next_page(list((await session.execute(stmt.limit(limit + 1))).scalars()), limit)
    return Page(items=[offer_out(o) for o in rows], next_cursor=nxt)


@router.get("/{offer_id}", response_model=Offer, summary="Get an offer you may see",
            description="For any organisation other than its provider and its buyer, the offer does not "
            "exist (404).", responses=problem_docs(401, 403, 404))
async def get_offer(offer_id: str, session: DbSession, principal: Reader) -> Offer:
    return offer_out(await offers.get_visible(session, principal, offer_id))


@router.post("/{offer_id}/withdraw", response_model=Offer, summary="Withdraw an open offer (its provider)",
             responses=problem_docs(401, 403, 404, 409))
async def withdraw_offer(offer_id: str, session: DbSession, provider: Provider) -> Offer:
    return offer_out(await offers.withdraw(session, provider, offer_id))
