"""Private offers: a provider offers one of its plans at custom terms to one named buyer
organisation (no FastAPI here).

Nobody else sees an offer or can quote it: for any other organisation it does not exist
(404, as for orders). The buyer quotes it like a plan (``offer_id``), for the version the
offer pins, and one order or subscription accepts it. The custom terms are a full plan
(the base plan with the provider's changes), validated like any catalog plan.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.models import Offer
from services.orders.orders import parties_filter
from services.orders.pricing import PlanTerms
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.outbox import record_event

OPEN, ACCEPTED, WITHDRAWN, EXPIRED = "open", "accepted", "withdrawn", "expired"
#: Terms a provider may change in an offer (the plan's kind and period stay).
TERMS = ("currency", "price", "price_per_query", "included_queries", "tiers", "query_quota", "access_days",
         "trial_days", "trial_queries")


def new_offer_id() -> str:
    return "off_" + secrets.token_hex(12)


def status_of(offer: Offer) -> str:
    if offer.status == OPEN and offer.expires_at <= utcnow():
        return EXPIRED
    return offer.status


def offered_plan(base: dict[str, Any], terms: dict[str, Any]) -> dict[str, Any]:
    """The base plan with the offer's terms; refused (422) when it cannot be priced."""
    unknown = sorted(set(terms) - set(TERMS))
    if unknown:
        raise RuleViolation(f"An offer can change only {', '.join(TERMS)}; not {', '.join(unknown)}.",
                            rule="offer-terms")
    plan = {**base, **terms, "id": base["id"]}
    PlanTerms.from_catalog(plan)
    return plan


def _not_found(offer_id: str) -> NotFound:
    return NotFound(f"No offer {offer_id} for your organisation.", problem="offer-not-found")


async def create(session: AsyncSession, principal: Principal, *, version: dict[str, Any], base_plan_id: str,
                 buyer_org: str, terms: dict[str, Any], note: str | None, valid_days: int) -> Offer:
    """Record an offer (the caller checked the product is the provider's and listed, and
    that ``buyer_org`` is a buyer organisation)."""
    if buyer_org == principal.org_id:
        raise RuleViolation("An offer goes to another organisation than your own.", rule="offer-to-buyer")
    base = next((p for p in version.get("plans") or [] if p.get("id") == base_plan_id), None)
    if base is None:
        raise RuleViolation(f"Version {version['version']} of product {version['product_id']} has no plan "
                            f"{base_plan_id}.", rule="plan-exists")
    now = utcnow()
    offer = Offer(id=new_offer_id(), provider_org=str(principal.org_id), buyer_org=buyer_org,
                  product_id=str(version["product_id"]), version=int(version["version"]),
                  base_plan_id=base_plan_id, plan=offered_plan(dict(base), terms), note=note, status=OPEN,
                  created_by=principal.subject, created_at=now, expires_at=now + timedelta(days=valid_days))
    session.add(offer)
    await session.flush()
    await _audit(session, offer, "created", principal, plan=offer.plan, buyer_org=buyer_org)
    return offer


async def _audit(session: AsyncSession, offer: Offer, verb: str, actor: Principal | None,
                 **details: Any) -> None:
    await record_event(session, service="orders", action=f"orders.offer.{verb}", subject_type="offer",
                       subject_id=offer.id, actor=actor,
                       details={"product_id": offer.product_id, "version": offer.version,
                                "provider_org": offer.provider_org, **details})


def visibility(principal: Principal) -> Any:
    """The offers a principal may see: its own as provider or as buyer; all for overseers."""
    return parties_filter(principal, Offer.buyer_org, Offer.provider_org)


async def get_visible(session: AsyncSession, principal: Principal, offer_id: str) -> Offer:
    stmt = select(Offer).where(Offer.id == offer_id)
    where = visibility(principal)
    if where is not None:
        stmt = stmt.where(where)
    offer = (await session.execute(stmt)).scalar_one_or_none()
    if offer is None:
        raise _not_found(offer_id)
    return offer


async def usable_offer(session: AsyncSession, principal: Principal, offer_id: str) -> Offer:
    """The offer a buyer quotes: addressed to its organisation and still open."""
    offer = await session.get(Offer, offer_id)
    if offer is None or offer.buyer_org != principal.org_id:
        raise _not_found(offer_id)
    state = status_of(offer)
    if state != OPEN:
        raise RuleViolation(f"Offer {offer_id} is {state}; ask the provider for a new one.",
                            rule="offer-open", status_now=state)
    return offer


async def accept(session: AsyncSession, offer_id: str, taken_by: str, actor: Principal) -> None:
    """In the transaction that creates the order or subscription: one use per offer."""
    result = await session.execute(update(Offer).where(Offer.id == offer_id, Offer.status == OPEN,
                                                       Offer.expires_at > utcnow())
                                   .values(status=ACCEPTED, accepted_by=taken_by))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"Offer {offer_id} was used or withdrawn meanwhile; ask the provider for a new one.",
                       problem="offer-used")
    offer = await session.get(Offer, offer_id)
    assert offer is not None
    await _audit(session, offer, "accepted", actor, by=taken_by)


async def withdraw(session: AsyncSession, principal: Principal, offer_id: str) -> Offer:
    offer = await get_visible(session, principal, offer_id)
    if offer.provider_org != principal.org_id:
        raise _not_found(offer_id)
    if offer.status != OPEN:
        raise Conflict(f"Offer {offer_id} is {offer.status}; only open offers can be withdrawn.",
                       problem="offer-not-open", status_now=offer.status)
    offer.status = WITHDRAWN
    await session.flush()
    await _audit(session, offer, "withdrawn", principal)
    return offer
