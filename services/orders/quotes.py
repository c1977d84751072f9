"""Quotes: a priced offer for one buyer organisation, pinned to one catalog version.

A quote is valid for ``quote_ttl_seconds`` (15 minutes by default), only for the
organisation that asked for it, and for one order.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.catalog_client import CatalogClient
from services.orders.models import Quote
from services.orders.pricing import PlanTerms, epsilon_sold, price_plan
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


async def create_quote(
    session: AsyncSession,
    catalog: CatalogClient,
    principal: Principal,
    *,
    product_id: str,
    version: int,
    plan_id: str,
    periods: int,
    quantity: int,
    fee_bps: int,
    ttl_seconds: int,
) -> Quote:
    if not principal.org_id:
        raise RuleViolation("Your token has no organisation (org claim); buyers act for an organisation.",
                            rule="buyer-organisation")
    frozen = await catalog.product_version(product_id, version)
    require_listed(frozen)
    require_current(frozen)
    plan = find_plan(frozen, plan_id)
    terms = PlanTerms.from_catalog(plan)
    max_days = (frozen.get("usage_policy") or {}).get("max_duration_days")
    priced = price_plan(terms, periods=periods, quantity=quantity, fee_bps=fee_bps,
                        max_days=int(max_days) if max_days else None)
    now = utcnow()
    quote = Quote(
        id=new_quote_id(), buyer_org=principal.org_id, buyer_sub=principal.subject,
        product_id=product_id, version=version, provider_org=str(frozen["provider_org"]),
        plan_id=plan_id, plan_kind=terms.kind, plan=plan, allowed_purposes=allowed_purposes(frozen),
        periods=periods, quantity=quantity, currency=priced.currency, gross=priced.gross,
        platform_fee=priced.platform_fee, provider_share=priced.provider_share, fee_bps=fee_bps,
        lines=[line.as_dict() for line in priced.lines],
        access={**priced.access.as_dict(), "query_quota": priced.query_quota,
                "epsilon_budget": epsilon_sold(terms, periods,
                                               (frozen.get("guardrails") or {}).get("epsilon_budget"))},
        created_at=now, expires_at=now + timedelta(seconds=ttl_seconds), order_id=None,
    )
    session.add(quote)
    await session.flush()
    return quote


async def get_quote(session: AsyncSession, principal: Principal, quote_id: str) -> Quote:
    quote = await session.get(Quote, quote_id)
    if quote is None or quote.buyer_org != principal.org_id:
        raise NotFound(
            f"No quote {quote_id} for your organisation; ask for one with POST /v1/quotes.",
            problem="quote-not-found",
        )
    return quote
