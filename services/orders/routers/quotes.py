"""``/v1/quotes``: priced offers for buyers."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.orders import free_checkout, quotes
from services.orders.context import OrdersContext
from services.orders.runtime import Ctx
from services.orders.schemas import Quote, QuoteCreate, quote_out
from shared.auth import Buyer, Principal
from shared.db import DbSession
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Quote,
    summary="Price a plan of a product version (buyer)",
    description="Fetches the pinned version from the catalog, prices the plan for `periods` and "
    "`quantity` (integer minor units; the platform fee and VAT from the settings) and returns a quote "
    "valid for 15 minutes, for your organisation only and for one order. The product must be listed "
    "and the version its latest. `mode`: `prepaid` (an order for `periods`/`quantity`), `subscription` "
    "(renews every period: start it with `POST /v1/subscriptions`; metered usage is billed after each "
    "period), `trial` (free, once per organisation and product, when the plan offers one). With "
    "`offer_id`, prices a private offer made to your organisation (its product, version and terms).",
    responses=problem_docs(401, 403, 404, 422, 503),
)
async def create_quote(body: QuoteCreate, ctx: Ctx, buyer: Buyer) -> Response:
    return await quote_response(ctx, buyer, body)


async def quote_response(ctx: OrdersContext, buyer: Principal, body: QuoteCreate) -> Response:
    """The new quote and the response for it; shared with the lane (services/orders/order_lane.py),
    which answers the plainest requests before FastAPI's routing."""
    ask = quotes.QuoteAsk(product_id=body.product_id, version=body.version, plan_id=body.plan_id,
                          periods=body.periods, quantity=body.quantity, mode=body.mode,
                          offer_id=body.offer_id)
    pricing = quotes.Pricing(fee_bps=ctx.settings.platform_fee_bps, tax_bps=ctx.settings.vat_bps,
                             ttl_seconds=ctx.settings.quote_ttl_seconds)
    if not quotes.needs_session(ask) and free_checkout.available(ctx.sessionmaker):
        # Priced from the catalog alone: the row is one autocommit INSERT (docs/performance.md).
        quote = await quotes.price_quote(None, ctx.catalog, buyer, ask, pricing)
        await free_checkout.write_quote(ctx.sessionmaker, quote)
    else:
        # An offer or a trial reads this service's database: the request's own transaction,
        # committed before the response is sent (as DbSession's).
        async with ctx.sessionmaker() as session, session.begin():
            quote = await quotes.create_quote(session, ctx.catalog, buyer, ask, pricing)
    # Dumped here, not returned for FastAPI to validate against Quote again and re-encode.
    return Response(quote_out(quote).model_dump_json(), status_code=status.HTTP_201_CREATED,
                    media_type="application/json")


@router.get("/{quote_id}", response_model=Quote, summary="Get one of your quotes (buyer)",
            responses=problem_docs(401, 403, 404))
async def get_quote(quote_id: str, session: DbSession, buyer: Buyer) -> Quote:
    return quote_out(await quotes.get_quote(session, buyer, quote_id))
