"""Pricing engine: integer minor units, fee + provider share = total, never negative."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.orders.pricing import (
    CURRENCY_EXPONENTS,
    MAX_CHARGE_MINOR_UNITS,
    Access,
    Money,
    PlanTerms,
    Tier,
    price_plan,
    split_fee,
)
from shared.errors import RuleViolation
from tests.orders.fakes import PLANS


def test_subscription_is_price_times_periods_with_a_ten_percent_fee() -> None:
    priced = price_plan(PlanTerms.from_catalog(PLANS["plan_monthly"]), periods=3, fee_bps=1000)
    assert (priced.gross, priced.platform_fee, priced.provider_share) == (14700, 1470, 13230)
    assert priced.access == Access("month", 3)
    assert priced.query_quota == 30000


def test_zero_decimal_currency_keeps_whole_yen() -> None:
    priced = price_plan(PlanTerms.from_catalog(PLANS["plan_once_jpy"]), fee_bps=1000)
    assert priced.currency == "JPY" and priced.gross == 5000
    assert Money(priced.gross, "JPY").decimal_string() == "5000"
    assert Money(4900, "EUR").decimal_string() == "49.00"
    assert Money(1234, "KWD").decimal_string() == "1.234"


def test_metered_plan_prices_graduated_tiers_after_included_queries() -> None:
    plan = PlanTerms.from_catalog(PLANS["plan_metered"])
    priced = price_plan(plan, periods=1, quantity=3500, fee_bps=1000)
    # 1000 included; billable 2500: 1000 at 5 + 1500 at 3, plus the 1000 base fee.
    assert [line.amount for line in priced.lines] == [1000, 5000, 4500]
    assert priced.gross == 10500 and priced.query_quota == 3500


def test_fee_rounds_half_up_and_the_provider_keeps_the_rest() -> None:
    assert split_fee(5, 1000) == (1, 4)  # 0.5 rounds up
    assert split_fee(4, 1000) == (0, 4)
    assert split_fee(0, 1000) == (0, 0)
    assert split_fee(999, 10_000) == (999, 0)


def test_unsupported_currency_and_malformed_plans_are_refused() -> None:
    with pytest.raises(RuleViolation, match="not supported"):
        PlanTerms.from_catalog({**PLANS["plan_monthly"], "currency": "XXX"})
    with pytest.raises(RuleViolation, match="needs a period"):
        PlanTerms.from_catalog({**PLANS["plan_monthly"], "period": None})
    with pytest.raises(RuleViolation, match="increase"):
        PlanTerms.from_catalog({**PLANS["plan_metered"], "tiers": [{"up_to": 10, "unit_price": 1},
                                                                   {"up_to": 5, "unit_price": 1}]})


def test_quantity_only_for_metered_and_periods_only_for_periodic_plans() -> None:
    with pytest.raises(RuleViolation, match="metered"):
        price_plan(PlanTerms.from_catalog(PLANS["plan_monthly"]), quantity=5, fee_bps=1000)
    with pytest.raises(RuleViolation, match="periods=1"):
        price_plan(PlanTerms.from_catalog(PLANS["plan_once_jpy"]), periods=2, fee_bps=1000)


def test_policy_maximum_duration_and_stripe_maximum_charge_are_enforced() -> None:
    with pytest.raises(RuleViolation, match="at most 365 days"):
        price_plan(PlanTerms.from_catalog(PLANS["plan_monthly"]), periods=13, fee_bps=1000, max_days=365)
    huge = PlanTerms.from_catalog({**PLANS["plan_monthly"], "price": MAX_CHARGE_MINOR_UNITS})
    with pytest.raises(RuleViolation, match="largest single payment"):
        price_plan(huge, periods=2, fee_bps=1000)


def test_access_end_uses_calendar_months_clamped_to_month_end() -> None:
    start = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert Access("month", 1).end(start) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert Access("year", 1).end(start) == datetime(2027, 1, 31, 12, tzinfo=UTC)
    assert Access("day", 30).end(start) == datetime(2026, 3, 2, 12, tzinfo=UTC)


@given(gross=st.integers(min_value=0, max_value=10**15), bps=st.integers(min_value=0, max_value=10_000))
def test_fee_plus_share_is_always_the_total(gross: int, bps: int) -> None:
    fee, share = split_fee(gross, bps)
    assert fee + share == gross
    assert fee >= 0 and share >= 0
    # the fee is the exact fee rounded to the nearest minor unit
    assert abs(fee * 10_000 - gross * bps) <= 5_000


tiers_strategy = st.lists(st.integers(min_value=0, max_value=500), min_size=0, max_size=4).flatmap(
    lambda prices: st.lists(st.integers(min_value=1, max_value=5000), min_size=len(prices),
                            max_size=len(prices), unique=True).map(
        lambda ups: tuple(Tier(u, p) for u, p in zip(sorted(ups), prices, strict=True))))


@settings(max_examples=300)
@given(
    kind=st.sampled_from(["free", "one_time", "subscription", "metered"]),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
    price=st.integers(min_value=0, max_value=100_000),
    periods=st.integers(min_value=1, max_value=12),
    quantity=st.integers(min_value=0, max_value=20_000),
    included=st.integers(min_value=0, max_value=2_000),
    per_query=st.integers(min_value=0, max_value=50),
    tiers=tiers_strategy,
    open_tier_price=st.integers(min_value=0, max_value=50),
    bps=st.integers(min_value=0, max_value=10_000),
)
def test_any_priced_plan_splits_exactly_and_never_goes_negative(
    kind: str, currency: str, price: int, periods: int, quantity: int, included: int, per_query: int,
    tiers: tuple[Tier, ...], open_tier_price: int, bps: int,
) -> None:
    periodic = kind in ("subscription", "metered")
    plan = PlanTerms(
        id="p", kind=kind, currency=currency, price=0 if kind == "free" else price,
        period="month" if periodic else None, price_per_query=per_query, included_queries=included,
        tiers=(*tiers, Tier(None, open_tier_price)) if kind == "metered" else (),
        access_days=None if periodic else 30,
    )
    if kind == "metered" and not (quantity or included):
        with pytest.raises(RuleViolation, match="includes no queries"):
            price_plan(plan, periods=periods, quantity=0, fee_bps=bps)
        return
    priced = price_plan(plan, periods=periods if periodic else 1,
                        quantity=quantity if kind == "metered" else 0, fee_bps=bps)
    assert priced.gross == sum(line.amount for line in priced.lines)
    assert all(line.amount == line.quantity * line.unit_price >= 0 for line in priced.lines)
    assert priced.platform_fee + priced.provider_share == priced.gross
    assert priced.platform_fee >= 0 and priced.provider_share >= 0
    if kind == "metered":
        billable = max(0, quantity - included)
        assert sum(line.quantity for line in priced.lines if line.code.startswith("usage")) == billable
