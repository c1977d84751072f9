"""Quotes: a priced offer for one buyer organisation, pinned to one catalog version.

A quote is valid for ``quote_ttl_seconds`` (15 minutes by default), only for the
organisation that asked for it, and for one order.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import offers
from services.orders.catalog_client import CatalogClient
from services.orders.models import Quote, Trial
from services.orders.pricing import PlanTerms, PriceBreakdown, epsilon_sold, price_plan
from services.orders.recurring import price_period, price_trial
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import NotFound, RuleViolation


def new_quote_id() -> str:
    return "quo_" + secrets.token_hex(12)


def require_listed(version: dict[str, Any]) -> None:
    status = version.get("status")
    if status != "listed":
        raise RuleViolation(
            f"Product {version.get('product_id')} is {status}; only listed products can be bought. "
            + NOT_LISTED_NEXT_STEP.get(str(status), "Choose another product."),
            rule="product-listed",
        )


#: What a buyer can do about a product that is not listed, by its status: a retired product
#: never comes back; a suspended one may be reinstated.
NOT_LISTED_NEXT_STEP = {
    "retired": "Its provider retired it for good; choose another product.",
    "suspended": "It is suspended; choose another product or wait until it is reinstated.",
}


def require_current(version: dict[str, Any]) -> None:
    """New quotes are for the product's latest version only.

    A provider publishes a new version to change terms (a price rise among them); quoting
    the version it replaces would let buyers dodge the change. Orders and subscriptions
    that already pinned the old version keep it, and a quote made before the new version
    was published stays good for its 15 minutes."""
    latest = version.get("latest_version")
    if isinstance(latest, int) and int(version.get("version") or 0) < latest:
        raise RuleViolation(
            f"Version {version.get('version')} of product {version.get('product_id')} has been "
            f"superseded by version {latest}; quote version {latest}.",
            rule="version-current", latest_version=latest,
        )


def find_plan(version: dict[str, Any], plan_id: str) -> dict[str, Any]:
    plans: list[dict[str, Any]] = list(version.get("plans") or [])
    for plan in plans:
        if plan.get("id") == plan_id:
            return plan
    raise RuleViolation(
        f"Version {version.get('version')} of product {version.get('product_id')} has no plan "
        f"{plan_id}; its plans are: {', '.join(str(p.get('id')) for p in plans) or 'none'}.",
        rule="plan-exists",
        allowed_plans=[p.get("id") for p in plans],
    )


def allowed_purposes(version: dict[str, Any]) -> list[str]:
    policy = version.get("usage_policy") or {}
    return [str(p) for p in policy.get("allowed_purposes") or []]


MODES = ("prepaid", "subscription", "trial")


@dataclass(frozen=True)
class QuoteAsk:
    """What a buyer asks to be priced (``POST /v1/quotes``)."""

    product_id: str
    version: int
    plan_id: str
    periods: int = 1
    quantity: int = 0
    mode: str = "prepaid"
    offer_id: str | None = None


@dataclass(frozen=True)
class Pricing:
    """The platform's rates at the time of the quote."""

    fee_bps: int
    tax_bps: int
    ttl_seconds: int


def price_for(ask: QuoteAsk, terms: PlanTerms, pricing: Pricing, max_days: int | None) -> PriceBreakdown:
    """Price the plan the way ``ask.mode`` buys it."""
    if ask.mode == "trial":
        return price_trial(terms, fee_bps=pricing.fee_bps)
    if ask.mode == "subscription":
        if ask.periods != 1 or ask.quantity:
            raise RuleViolation(
                "A subscription is priced per period and bills metered usage after each period: "
                "leave out periods and quantity.", rule="subscription-quote-shape")
        return price_period(terms, fee_bps=pricing.fee_bps, tax_bps=pricing.tax_bps)
    return price_plan(terms, periods=ask.periods, quantity=ask.quantity, fee_bps=pricing.fee_bps,
                      max_days=max_days, tax_bps=pricing.tax_bps)


async def trial_taken(session: AsyncSession, buyer_org: str, product_id: str) -> Trial | None:
    return await session.get(Trial, (buyer_org, product_id))


def trial_used(product_id: str, trial: Trial) -> RuleViolation:
    return RuleViolation(
        f"Your organisation already had its free trial of product {product_id} (order {trial.order_id}); "
        "buy a plan instead.", rule="trial-once-per-organisation-and-product", order_id=trial.order_id)


def needs_session(ask: QuoteAsk) -> bool:
    """Whether pricing ``ask`` reads this service's database: an offer's terms, or whether the
    organisation had its trial. Other quotes are priced from the catalog alone (and can be
    written as one autocommit ``INSERT``: ``free_checkout.write_quote``)."""
    return ask.offer_id is not None or ask.mode == "trial"


async def create_quote(session: AsyncSession, catalog: CatalogClient, principal: Principal, ask: QuoteAsk,
                       pricing: Pricing) -> Quote:
    """Price ``ask`` and add the quote to ``session`` (flushed)."""
    quote = await price_quote(session, catalog, principal, ask, pricing)
    session.add(quote)
    await session.flush()
    return quote


async def price_quote(session: AsyncSession | None, catalog: CatalogClient, principal: Principal,
                      ask: QuoteAsk, pricing: Pricing) -> Quote:
    """The quote for ``ask``, not yet written. ``session`` may be None when not
    :func:`needs_session`."""
    if not principal.org_id:
        raise RuleViolation("Your token has no organisation (org claim); buyers act for an organisation.",
                            rule="buyer-organisation")
    if ask.mode not in MODES:
        raise RuleViolation(f"mode must be one of {', '.join(MODES)}.", rule="quote-mode")
    assert session is not None or not needs_session(ask)
    offer = None
    if session is not None and ask.offer_id:
        offer = await offers.usable_offer(session, principal, ask.offer_id)
    product_id, version = (offer.product_id, offer.version) if offer else (ask.product_id, ask.version)
    frozen = await catalog.pinned_version(product_id, version)
    require_listed(frozen)
    if offer is None:
        require_current(frozen)  # an offer pins the version it was made for
        plan = find_plan(frozen, ask.plan_id)
    else:
        plan = dict(offer.plan)
    terms = PlanTerms.from_catalog(plan)
    if session is not None and ask.mode == "trial" \
            and (taken := await trial_taken(session, principal.org_id, product_id)):
        raise trial_used(product_id, taken)
    max_days = (frozen.get("usage_policy") or {}).get("max_duration_days")
    priced = price_for(ask, terms, pricing, int(max_days) if max_days else None)
    now = utcnow()
    quote = Quote(
        id=new_quote_id(), buyer_org=principal.org_id, buyer_sub=principal.subject,
        product_id=product_id, version=version, provider_org=str(frozen["provider_org"]),
        plan_id=str(plan["id"]), plan_kind=terms.kind, plan=plan, allowed_purposes=allowed_purposes(frozen),
        periods=ask.periods, quantity=ask.quantity, currency=priced.currency, gross=priced.gross,
        platform_fee=priced.platform_fee, provider_share=priced.provider_share, fee_bps=pricing.fee_bps,
        lines=[line.as_dict() for line in priced.lines],
        access={**priced.access.as_dict(), "query_quota": priced.query_quota,
                "epsilon_budget": epsilon_sold(terms, ask.periods,
                                               (frozen.get("guardrails") or {}).get("epsilon_budget"))},
        created_at=now, expires_at=now + timedelta(seconds=pricing.ttl_seconds), order_id=None,
        mode=ask.mode, offer_id=offer.id if offer else None, tax=priced.tax, tax_bps=priced.tax_bps,
    )
    return quote


def require_unexpired(quote: Quote, now: datetime) -> None:
    if quote.expires_at <= now:
        raise RuleViolation(f"Quote {quote.id} expired at {quote.expires_at.isoformat()}; get a new quote.",
                            rule="quote-expired")


async def require_orderable(catalog: CatalogClient, quote: Quote, purpose: str) -> dict[str, Any]:
    """Re-read the pinned version when the quote is used: still listed, purpose allowed."""
    version = await catalog.pinned_version(quote.product_id, quote.version)
    require_listed(version)
    purposes = allowed_purposes(version)
    if purpose not in purposes:
        raise RuleViolation(
            f"Purpose {purpose!r} is not allowed for product {quote.product_id}; declare one of: "
            f"{', '.join(purposes) or '(none: the product allows no purpose)'}.",
            rule="purpose-allowed", allowed_purposes=purposes,
        )
    return version


async def get_quote(session: AsyncSession, principal: Principal, quote_id: str) -> Quote:
    quote = await session.get(Quote, quote_id)
    if quote is None or quote.buyer_org != principal.org_id:
        raise NotFound(
            f"No quote {quote_id} for your organisation; ask for one with POST /v1/quotes.",
            problem="quote-not-found",
        )
    return quote
