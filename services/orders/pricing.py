"""Pricing engine: integer minor units of ISO 4217 currencies, never floats.

Plain domain code (no web framework): given a catalog plan, a number of periods
and a quantity of queries, it produces a priced breakdown whose total always
splits exactly into the platform fee and the provider's share.

Plan kinds (docs/contracts.md):

* ``free``: 0, access for ``access_days``.
* ``one_time``: ``price`` once, access for ``access_days``.
* ``subscription``: ``price`` per ``period`` (month/year) times ``periods``.
* ``metered``: the base fee ``price`` per period (``access_days`` when the plan has no
  period) plus a prepaid bundle of ``quantity`` queries: the first ``included_queries``
  are free, the rest are priced by graduated ``tiers`` (each tier's unit price applies
  to the queries that fall inside it), or at ``price_per_query`` when there are no tiers.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.errors import RuleViolation

#: ISO 4217 minor-unit exponents of the currencies the marketplace settles in.
#: Zero-decimal currencies (JPY, KRW...) have no minor unit: 4900 JPY is ¥4,900.
CURRENCY_EXPONENTS: dict[str, int] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
    "CZK": 2, "HUF": 2, "RON": 2, "BGN": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SGD": 2,
    "HKD": 2, "CNY": 2, "INR": 2, "BRL": 2, "MXN": 2, "ZAR": 2, "ILS": 2, "TRY": 2,
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "PYG": 0, "UGX": 0, "XAF": 0, "XOF": 0,
    "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3,
}

#: Stripe refuses larger amounts for one charge (8 digits in minor units).
MAX_CHARGE_MINOR_UNITS = 99_999_999
MAX_PERIODS = 120
MAX_QUANTITY = 1_000_000_000
BPS_DENOMINATOR = 10_000

PLAN_KINDS = ("free", "one_time", "subscription", "metered")
PERIOD_UNITS = ("month", "year")


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise RuleViolation(
            f"Currency {currency!r} is not supported; use one of "
            f"{', '.join(sorted(CURRENCY_EXPONENTS))} (ISO 4217 codes).",
            rule="currency-supported",
        ) from None


@dataclass(frozen=True)
class Money:
    """An amount in minor units of a currency (cents for EUR, yen for JPY)."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("Money amounts are integers of minor units")
        currency_exponent(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")

    def decimal_string(self) -> str:
        """Major units as a decimal string: 4900 EUR → "49.00", 4900 JPY → "4900"."""
        exp = currency_exponent(self.currency)
        return str(Decimal(self.amount).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))


def split_fee(gross: int, fee_bps: int) -> tuple[int, int]:
    """Split ``gross`` into (platform fee, provider share), rounding the fee half up.

    Integer arithmetic only; the two parts always add up to ``gross`` exactly and
    neither is negative."""
    if gross < 0:
        raise ValueError("gross must not be negative")
    if not 0 <= fee_bps <= BPS_DENOMINATOR:
        raise ValueError("fee_bps must be between 0 and 10000")
    fee = (gross * fee_bps + BPS_DENOMINATOR // 2) // BPS_DENOMINATOR
    return fee, gross - fee


@dataclass(frozen=True)
class Tier:
    up_to: int | None  # cumulative number of billable queries this tier ends at; None = no end
    unit_price: int


@dataclass(frozen=True)
class PlanTerms:
    """The priced part of a catalog plan (docs/contracts.md `Plan`)."""

    id: str
    kind: str
    currency: str
    price: int = 0
    period: str | None = None
    price_per_query: int = 0
    included_queries: int = 0
    tiers: tuple[Tier, ...] = ()
    query_quota: int | None = None
    access_days: int | None = None
    trial_days: int | None = None
    trial_queries: int | None = None
    epsilon: float | None = None  # L3: the privacy budget (ε) the plan sells

    @classmethod
    def from_catalog(cls, plan: dict[str, Any]) -> PlanTerms:
        """Validate a plan as the catalog sends it; a malformed one is refused, not guessed."""
        try:
            kind = str(plan["kind"])
            tiers = tuple(
                Tier(None if t.get("up_to") is None else int(t["up_to"]), int(t["unit_price"]))
                for t in plan.get("tiers") or []
            )
            terms = cls(
                id=str(plan["id"]),
                kind=kind,
                currency=str(plan.get("currency") or "EUR").upper(),
                price=int(plan.get("price") or 0),
                period=plan.get("period"),
                price_per_query=int(plan.get("price_per_query") or 0),
                included_queries=int(plan.get("included_queries") or 0),
                tiers=tiers,
                query_quota=None if plan.get("query_quota") is None else int(plan["query_quota"]),
                access_days=None if plan.get("access_days") is None else int(plan["access_days"]),
                trial_days=None if plan.get("trial_days") is None else int(plan["trial_days"]),
                trial_queries=None if plan.get("trial_queries") is None else int(plan["trial_queries"]),
                epsilon=None if plan.get("epsilon") is None else float(plan["epsilon"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleViolation(
                f"The catalog plan is malformed ({exc}); ask the provider to fix the plan.",
                rule="plan-well-formed",
            ) from exc
        terms.check()
        return terms

    def check(self) -> None:
        problems = []
        if self.kind not in PLAN_KINDS:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(PLAN_KINDS)}")
        if self.kind == "free" and self.price != 0:
            problems.append("a free plan must have price 0")
        if min(self.price, self.price_per_query, self.included_queries) < 0:
            problems.append("prices and included queries must not be negative")
        if self.kind == "subscription" and self.period not in PERIOD_UNITS:
            problems.append("a subscription needs a period of month or year")
        if self.period is not None and self.period not in PERIOD_UNITS:
            problems.append(f"period {self.period!r} is not month or year")
        if self.period is None and self.kind != "subscription" and not self.access_days:
            problems.append("a plan without a period needs access_days")
        last = 0
        for i, tier in enumerate(self.tiers):
            if tier.unit_price < 0:
                problems.append("tier unit prices must not be negative")
            if tier.up_to is None:
                if i != len(self.tiers) - 1:
                    problems.append("only the last tier may be open-ended (up_to null)")
            elif tier.up_to <= last:
                problems.append("tier up_to values must increase")
            else:
                last = tier.up_to
        currency_exponent(self.currency)
        if problems:
            raise RuleViolation(
                "The catalog plan cannot be priced: " + "; ".join(problems)
                + ". Ask the provider to fix the plan.",
                rule="plan-well-formed",
            )


@dataclass(frozen=True)
class Line:
    """One line of a priced breakdown."""

    code: str  # base | usage | usage_tier_<n>
    description: str
    quantity: int
    unit_price: int
    amount: int

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "description": self.description, "quantity": self.quantity,
                "unit_price": self.unit_price, "amount": self.amount}


@dataclass(frozen=True)
class Access:
    """How long a purchase gives access: whole calendar periods or a number of days."""

    unit: str  # month | year | day
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "count": self.count}

    def nominal_days(self) -> int:
        """Length for policy checks: 30-day months and 365-day years."""
        return {"month": 30, "year": 365, "day": 1}[self.unit] * self.count

    def end(self, start: datetime) -> datetime:
        """When access that starts at ``start`` ends (calendar months, clamped to month ends)."""
        if self.unit == "day":
            return start + timedelta(days=self.count)
        months = self.count * (12 if self.unit == "year" else 1)
        y, m = divmod(start.month - 1 + months, 12)
        year, month = start.year + y, m + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class PriceBreakdown:
    """``gross`` is what the buyer pays: ``platform_fee + provider_share`` (the net price,
    split) plus ``tax`` (VAT at ``tax_bps``, per line, as Stripe computes it on invoices)."""

    currency: str
    lines: tuple[Line, ...]
    gross: int
    platform_fee: int
    provider_share: int
    fee_bps: int
    periods: int
    quantity: int
    access: Access
    query_quota: int | None = field(default=None)
    tax: int = 0
    tax_bps: int = 0

    @property
    def is_free(self) -> bool:
        return self.gross == 0


def tax_of(amount: int, tax_bps: int) -> int:
    """VAT on one line, rounded half away from zero (as Stripe rounds each line's tax)."""
    sign = -1 if amount < 0 else 1
    return sign * ((abs(amount) * tax_bps + BPS_DENOMINATOR // 2) // BPS_DENOMINATOR)


def total_of(plan: PlanTerms, lines: list[Line], *, fee_bps: int, tax_bps: int, periods: int,
             quantity: int, access: Access, quota: int | None) -> PriceBreakdown:
    """Add up priced lines: the net splits into fee and share, VAT goes on top."""
    net = sum(line.amount for line in lines)
    tax = sum(tax_of(line.amount, tax_bps) for line in lines)
    if net < 0 or tax < 0:
        raise RuleViolation("The lines add up to less than nothing; this is credited, not charged.",
                            rule="charge-not-negative")
    if net + tax > MAX_CHARGE_MINOR_UNITS:
        raise RuleViolation(
            f"The total {Money(net + tax, plan.currency).decimal_string()} {plan.currency} exceeds the "
            f"largest single payment ({MAX_CHARGE_MINOR_UNITS} minor units); order fewer periods or queries.",
            rule="max-charge",
        )
    fee, share = split_fee(net, fee_bps)
    return PriceBreakdown(
        currency=plan.currency, lines=tuple(lines), gross=net + tax, platform_fee=fee,
        provider_share=share, fee_bps=fee_bps, periods=periods, quantity=quantity, access=access,
        query_quota=quota, tax=tax, tax_bps=tax_bps,
    )


def epsilon_sold(plan: PlanTerms, periods: int, product_default: float | None) -> float | None:
    """The privacy budget (ε) an order of ``plan`` buys: the plan's epsilon (else the product's
    default), per period for periodic plans, like the query quota; None = no per-entitlement
    limit (the product's budget still applies)."""
    eps = plan.epsilon if plan.epsilon is not None else product_default
    if eps is None:
        return None
    return round(eps * periods, 6) if plan.period else eps


def _graduated(billable: int, tiers: tuple[Tier, ...]) -> list[Line]:
    lines: list[Line] = []
    start = 0
    for i, tier in enumerate(tiers):
        if billable <= start:
            break
        end = billable if tier.up_to is None else min(billable, tier.up_to)
        units = end - start
        if units > 0:
            label = f"queries {start + 1}–{end}"
            lines.append(Line(f"usage_tier_{i + 1}", f"Billable {label}", units, tier.unit_price,
                              units * tier.unit_price))
        if tier.up_to is None:
            start = billable
            break
        start = tier.up_to
    if start < billable:
        raise RuleViolation(
            f"The plan's tiers end at {start} queries; order at most that many billable queries.",
            rule="quantity-within-tiers",
        )
    return lines


def metered_bundle(plan: PlanTerms, quantity: int) -> int:
    """The queries a prepaid metered order buys: ``quantity``, or the plan's included
    queries when none are asked for. Never unlimited: a bundle of 0 queries would give
    access to nothing (or, read as "no quota", to everything for free), so it is refused."""
    bundle = quantity or plan.included_queries
    if bundle <= 0:
        raise RuleViolation(
            f"Plan {plan.id} is metered and includes no queries: order the number of queries you "
            "want with quantity (at least 1).",
            rule="metered-quantity-required",
        )
    return bundle


def usage_lines(plan: PlanTerms, queries: int) -> list[Line]:
    """The billable part of ``queries`` (beyond the included ones), by tiers or per query."""
    billable = max(0, queries - plan.included_queries)
    if plan.tiers:
        return _graduated(billable, plan.tiers)
    if billable and plan.price_per_query:
        return [Line("usage", f"{billable} billable queries", billable, plan.price_per_query,
                     billable * plan.price_per_query)]
    return []


def price_plan(
    plan: PlanTerms, *, periods: int = 1, quantity: int = 0, fee_bps: int, max_days: int | None = None,
    tax_bps: int = 0,
) -> PriceBreakdown:
    """Price ``plan`` for ``periods`` periods and a prepaid bundle of ``quantity`` queries."""
    plan.check()
    if not 1 <= periods <= MAX_PERIODS:
        raise RuleViolation(f"periods must be between 1 and {MAX_PERIODS}.", rule="periods-range")
    if not 0 <= quantity <= MAX_QUANTITY:
        raise RuleViolation(f"quantity must be between 0 and {MAX_QUANTITY}.", rule="quantity-range")
    if plan.kind != "metered" and quantity:
        raise RuleViolation(
            f"quantity applies to metered plans only; plan {plan.id} is {plan.kind}. Leave it out.",
            rule="quantity-metered-only",
        )
    if plan.period is None and periods != 1:
        raise RuleViolation(
            f"Plan {plan.id} has no period: it gives {plan.access_days} days of access; order periods=1.",
            rule="periods-for-periodic-plans",
        )
    access = Access(plan.period, periods) if plan.period else Access("day", plan.access_days or 0)
    if max_days is not None and access.nominal_days() > max_days:
        raise RuleViolation(
            f"The product's usage policy allows access for at most {max_days} days; "
            f"this order would give {access.count} {access.unit}(s). Order fewer periods.",
            rule="max-duration",
        )
    lines: list[Line] = []
    if plan.price:
        what = {"one_time": "One-off access", "subscription": f"Subscription per {plan.period}",
                "metered": f"Base fee per {plan.period or 'purchase'}"}.get(plan.kind, plan.kind)
        lines.append(Line("base", what, periods, plan.price, plan.price * periods))
    if plan.kind == "metered":
        lines.extend(usage_lines(plan, quantity))
    quota = plan.query_quota
    if plan.kind == "metered":
        quota = metered_bundle(plan, quantity)
    elif quota is not None and plan.period:
        quota = quota * periods  # the quota is per period
    return total_of(plan, lines, fee_bps=fee_bps, tax_bps=tax_bps, periods=periods, quantity=quantity,
                    access=access, quota=quota)
