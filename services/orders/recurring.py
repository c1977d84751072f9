"""Pricing of renewing subscriptions, post-paid usage, spending caps, trials and proration
(plain domain code, integer minor units).

* A **subscription period** costs the plan's ``price`` (a metered plan's base fee), paid at
  the start of the period; a metered plan's usage is billed **after** the period, on the
  next period's invoice (what Stripe calls licensed + metered items).
* A **spending cap** is the most a buyer pays for one period (base fee + usage, before
  VAT); it becomes the period's query allowance: the included queries plus the billable
  queries the rest of the cap buys at the plan's tiers. Access stops there (the entitlement's
  quota), and the refusal names the cap.
* A **trial** is free: ``trial_days`` of access (or the plan's own access length) and at
  most ``trial_queries`` queries.
* **Proration** of a plan change at ``at`` within [start, end): the unused share of the old
  price is credited, the same share of the new price charged, both rounded half up.
"""

from __future__ import annotations

from datetime import datetime

from services.orders.pricing import (
    Access,
    Line,
    PlanTerms,
    PriceBreakdown,
    Tier,
    total_of,
    usage_lines,
)
from shared.errors import RuleViolation

RECURRING_KINDS = ("subscription", "metered")


def require_recurring(plan: PlanTerms) -> str:
    """A subscription needs a plan that renews every month or year; returns the period."""
    if plan.kind not in RECURRING_KINDS or plan.period is None:
        raise RuleViolation(
            f"Plan {plan.id} ({plan.kind}) does not renew; subscribe to a subscription or metered plan "
            "with a period, or buy this one with a prepaid order (mode prepaid).",
            rule="subscription-plan-renews",
        )
    return plan.period


def price_period(plan: PlanTerms, *, fee_bps: int, tax_bps: int, usage_queries: int = 0,
                 spend_cap: int | None = None) -> PriceBreakdown:
    """One period of a subscription: the base price in advance, plus ``usage_queries``
    of the period before (metered plans)."""
    period = require_recurring(plan)
    lines: list[Line] = []
    if plan.price:
        what = "Subscription" if plan.kind == "subscription" else "Base fee"
        lines.append(Line("base", f"{what} per {period}", 1, plan.price, plan.price))
    if plan.kind == "metered":
        lines.extend(Line(f"previous_{line.code}", f"{line.description} (previous period)",
                          line.quantity, line.unit_price, line.amount)
                     for line in usage_lines(plan, usage_queries))
    return total_of(plan, lines, fee_bps=fee_bps, tax_bps=tax_bps, periods=1, quantity=0,
                    access=Access(period, 1), quota=period_allowance(plan, spend_cap))


def _queries_within(budget: int, tiers: tuple[Tier, ...]) -> int | None:
    """The most billable queries ``budget`` buys at graduated ``tiers`` (None: unlimited)."""
    start, left, bought = 0, budget, 0
    for tier in tiers:
        size = None if tier.up_to is None else tier.up_to - start
        if tier.unit_price == 0:
            if size is None:
                return None
            bought += size
        else:
            can = left // tier.unit_price
            if size is None or can < size:
                return bought + can
            bought += size
            left -= size * tier.unit_price
        if tier.up_to is None:
            break
        start = tier.up_to
    return bought


def period_allowance(plan: PlanTerms, spend_cap: int | None) -> int | None:
    """Queries one period allows: the plan's quota, and within the buyer's spending cap."""
    if plan.kind != "metered":
        return plan.query_quota
    limits = [plan.query_quota] if plan.query_quota is not None else []
    if spend_cap is not None:
        budget = spend_cap - plan.price
        if budget < 0:
            raise RuleViolation(
                f"A spending cap of {spend_cap} is below the plan's base fee of {plan.price} per "
                f"{plan.period}; set at least {plan.price}.",
                rule="spend-cap-covers-base-fee", minimum=plan.price,
            )
        tiers = plan.tiers or (Tier(None, plan.price_per_query),)
        billable = _queries_within(budget, tiers)
        if billable is not None:
            limits.append(plan.included_queries + billable)
    return min(limits) if limits else None


def price_trial(plan: PlanTerms, *, fee_bps: int) -> PriceBreakdown:
    """A free trial of ``plan``; refused when the plan offers none."""
    if not plan.trial_days and not plan.trial_queries:
        raise RuleViolation(f"Plan {plan.id} offers no free trial; buy it, or choose a plan with one.",
                            rule="trial-offered")
    if plan.trial_days:
        access = Access("day", plan.trial_days)
    elif plan.period:
        access = Access(plan.period, 1)
    else:
        access = Access("day", plan.access_days or 0)
    quota = plan.trial_queries if plan.trial_queries else (plan.query_quota or plan.included_queries or None)
    return total_of(plan, [], fee_bps=fee_bps, tax_bps=0, periods=1, quantity=0, access=access,
                    quota=quota)


def proration(old_price: int, new_price: int, start: datetime, end: datetime,
              at: datetime) -> tuple[int, int, tuple[int, int]]:
    """(credit for the old plan, charge for the new one, the unused fraction) at ``at``."""
    total = int((end - start).total_seconds())
    unused = max(0, min(total, int((end - at).total_seconds())))
    if total <= 0:
        return 0, 0, (0, 1)

    def share(price: int) -> int:
        return (2 * price * unused + total) // (2 * total)

    return share(old_price), share(new_price), (unused, total)
