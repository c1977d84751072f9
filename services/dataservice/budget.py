"""The product-wide privacy budget per release period, and the record of every charge.

Single source of truth: the dataservice's own database (it sees every L3 answer of its
products; replicas share it). One L3 answer is charged in one transaction, before it is
returned, by conditional updates that re-check the limits:

    UPDATE privacy_budgets SET epsilon_spent_micro = epsilon_spent_micro + :eps, ...
     WHERE product_id = :p AND period = :k
       AND epsilon_spent_micro + :eps <= :total AND delta_spent_pico + :delta <= :delta_total
    RETURNING ...

then the entitlement's own share (``usage.charge``) the same way. No row back from either
means that budget is spent: the transaction rolls back and the problem names the budget
(``product``: 429 with when it renews; ``entitlement``: 403, buy more). On PostgreSQL each
UPDATE waits for the row lock and re-evaluates its condition on the newest row; on SQLite
writers are serialised. Budgets are always locked product first, then entitlement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.dataservice.config import PrivacyBudget
from services.dataservice.models import entitlement_usage, privacy_budgets, privacy_charges
from services.dataservice.privacy import MICRO, PICO
from services.dataservice.usage import UsageState, to_micro, update_or_create
from shared.db import utcnow
from shared.errors import ProblemError

# --- release periods -------------------------------------------------------------------


def period_of(now: datetime, period: str) -> tuple[str, datetime]:
    """The period's key and when the next one starts (UTC)."""
    y, m = now.year, now.month
    if period == "month":
        return f"{y:04d}-{m:02d}", datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    if period == "quarter":
        q = (m - 1) // 3 + 1
        nq_y, nq_m = (y + 1, 1) if q == 4 else (y, 3 * q + 1)
        return f"{y:04d}-Q{q}", datetime(nq_y, nq_m, 1, tzinfo=UTC)
    return f"{y:04d}", datetime(y + 1, 1, 1, tzinfo=UTC)


def request_micro(epsilon: float) -> int:
    """A requested ε in millionths, rounded up (the charge is then OpenDP's map, ≤ this)."""
    return math.ceil(round(epsilon * MICRO, 6))


def to_pico(delta: float) -> int:
    """δ in units of 1e-12, rounded up."""
    return math.ceil(round(delta * PICO, 3))


# --- refusals ----------------------------------------------------------------------------


class PrivacyBudgetExhausted(ProblemError):
    """A privacy budget cannot pay for the query; ``budget`` says which."""

    problem, title = "privacy-budget-exhausted", "Privacy budget used up"


@dataclass(frozen=True)
class ProductBudget:
    product_id: str
    period: str
    renews_at: datetime
    epsilon_total_micro: int
    epsilon_spent_micro: int
    delta_total_pico: int
    delta_spent_pico: int

    @property
    def epsilon_remaining(self) -> float:
        return max(0, self.epsilon_total_micro - self.epsilon_spent_micro) / MICRO

    def view(self) -> dict[str, Any]:
        return {"period": self.period, "renews_at": self.renews_at.isoformat().replace("+00:00", "Z"),
                "epsilon_total": self.epsilon_total_micro / MICRO,
                "epsilon_spent": self.epsilon_spent_micro / MICRO,
                "epsilon_remaining": self.epsilon_remaining,
                "delta_total": self.delta_total_pico / PICO,
                "delta_spent": self.delta_spent_pico / PICO}


def _retry_after(renews_at: datetime) -> str:
    return str(max(1, math.ceil((renews_at - utcnow()).total_seconds())))


def refuse_product(state: ProductBudget, eps_micro: int,
                   delta_pico: int) -> PrivacyBudgetExhausted | None:
    """The problem to raise when the product's budget cannot pay, else None."""
    renew = state.renews_at.isoformat().replace("+00:00", "Z")
    common: dict[str, Any] = {"budget": "product", "period": state.period, "renews_at": renew,
              "epsilon_total": state.epsilon_total_micro / MICRO,
              "epsilon_remaining": state.epsilon_remaining, "epsilon_needed": eps_micro / MICRO}
    if state.epsilon_spent_micro + eps_micro > state.epsilon_total_micro:
        return PrivacyBudgetExhausted(
            f"The product's privacy budget for {state.period} (epsilon "
            f"{state.epsilon_total_micro / MICRO:g}, shared by every buyer) has "
            f"{state.epsilon_remaining:g} left; this query needs {eps_micro / MICRO:g}. Ask with a "
            f"smaller epsilon, or wait until it renews at {renew}.",
            status=429, headers={"Retry-After": _retry_after(state.renews_at)}, **common)
    if state.delta_spent_pico + delta_pico > state.delta_total_pico:
        return PrivacyBudgetExhausted(
            f"The product's delta budget for {state.period} ({state.delta_total_pico / PICO:g}) cannot "
            f"pay for choosing groups by a noisy threshold ({delta_pico / PICO:g} per query). Group by "
            f"columns with declared values instead (GET /v1/schema), or wait until {renew}.",
            status=429, headers={"Retry-After": _retry_after(state.renews_at)},
            delta_total=state.delta_total_pico / PICO, delta_needed=delta_pico / PICO,
            **{**common, "budget": "product-delta"})
    return None


# --- the ledger ----------------------------------------------------------------------------


def terms(product_id: str, privacy: PrivacyBudget) -> ProductBudget:
    """This period's budget as the mapping declares it (nothing spent; no database)."""
    period, renews = period_of(utcnow(), privacy.period)
    return ProductBudget(product_id, period, renews, to_micro(privacy.epsilon), 0,
                         to_pico(privacy.delta), 0)


async def product_budget(session: AsyncSession, product_id: str, privacy: PrivacyBudget,
                         now: datetime | None = None) -> ProductBudget:
    """The current period's budget as it stands (zero spent before the first charge)."""
    period, renews = period_of(now or utcnow(), privacy.period)
    b = privacy_budgets.c
    row = (await session.execute(select(b.epsilon_spent_micro, b.delta_spent_pico).where(
        b.product_id == product_id, b.period == period))).first()
    spent, dspent = (0, 0) if row is None else (int(row[0]), int(row[1]))
    return ProductBudget(product_id, period, renews, to_micro(privacy.epsilon), spent,
                         to_pico(privacy.delta), dspent)


async def standing(session: AsyncSession, product_id: str, privacy: PrivacyBudget,
                   entitlement_id: str) -> tuple[ProductBudget, UsageState]:
    """The product's budget this period and the entitlement's counters, in one statement
    (the check before touching any data; the charge re-checks atomically)."""
    period, renews = period_of(utcnow(), privacy.period)
    b, u = privacy_budgets.c, entitlement_usage.c
    mine = (b.product_id == product_id, b.period == period)
    row = (await session.execute(select(
        select(b.epsilon_spent_micro).where(*mine).scalar_subquery(),
        select(b.delta_spent_pico).where(*mine).scalar_subquery(),
        select(u.queries_used).where(u.entitlement_id == entitlement_id).scalar_subquery(),
        select(u.epsilon_used_micro).where(u.entitlement_id == entitlement_id).scalar_subquery(),
    ))).one()
    state = ProductBudget(product_id, period, renews, to_micro(privacy.epsilon), int(row[0] or 0),
                          to_pico(privacy.delta), int(row[1] or 0))
    return state, UsageState(int(row[2] or 0), int(row[3] or 0))


async def charge_product(session: AsyncSession, budget: ProductBudget, eps_micro: int,
                         delta_pico: int) -> ProductBudget:
    """Spend from the product's budget if it can pay; otherwise raise (the caller's
    transaction rolls back)."""
    now = utcnow()
    b = privacy_budgets.c
    row = await update_or_create(session, privacy_budgets, {
        "product_id": budget.product_id, "period": budget.period,
        "epsilon_total_micro": budget.epsilon_total_micro, "epsilon_spent_micro": 0,
        "delta_total_pico": budget.delta_total_pico, "delta_spent_pico": 0, "answers": 0,
        "renews_at": budget.renews_at, "updated_at": now}, ["product_id", "period"],
        update(privacy_budgets)
        .where(b.product_id == budget.product_id, b.period == budget.period,
               b.epsilon_spent_micro + eps_micro <= budget.epsilon_total_micro,
               b.delta_spent_pico + delta_pico <= budget.delta_total_pico)
        .values(epsilon_spent_micro=b.epsilon_spent_micro + eps_micro,
                delta_spent_pico=b.delta_spent_pico + delta_pico, answers=b.answers + 1,
                epsilon_total_micro=budget.epsilon_total_micro,
                delta_total_pico=budget.delta_total_pico, updated_at=now)
        .returning(b.epsilon_spent_micro, b.delta_spent_pico))
    if row is None:
        current = (await session.execute(select(b.epsilon_spent_micro, b.delta_spent_pico).where(
            b.product_id == budget.product_id, b.period == budget.period))).one()
        state = ProductBudget(budget.product_id, budget.period, budget.renews_at,
                              budget.epsilon_total_micro, int(current[0]), budget.delta_total_pico,
                              int(current[1]))
        problem = refuse_product(state, eps_micro, delta_pico)
        assert problem is not None
        raise problem
    return ProductBudget(budget.product_id, budget.period, budget.renews_at,
                         budget.epsilon_total_micro, int(row[0]), budget.delta_total_pico, int(row[1]))


async def record_charge(session: AsyncSession, *, budget: ProductBudget, catalog_product_id: str,
                        entitlement_id: str, organisation_id: str | None, subject: str, jti: str,
                        eps_micro: int, delta_pico: int, usage_id: str) -> None:
    await session.execute(insert(privacy_charges).values(
        product_id=budget.product_id, period=budget.period, catalog_product_id=catalog_product_id,
        entitlement_id=entitlement_id, organisation_id=organisation_id, subject=subject, jti=jti,
        epsilon_micro=eps_micro, delta_pico=delta_pico, usage_id=usage_id, created_at=utcnow()))


# --- the regulator's view ----------------------------------------------------------------------


async def spend_by(session: AsyncSession, product_id: str, period: str, column: str) -> list[dict[str, Any]]:
    """Charges of one product and period summed by organisation or entitlement."""
    c = privacy_charges.c
    key = c[column]
    rows = (await session.execute(
        select(key, c.organisation_id if column == "entitlement_id" else key,
               func.count(), func.sum(c.epsilon_micro), func.sum(c.delta_pico))
        .where(c.product_id == product_id, c.period == period)
        .group_by(key, c.organisation_id if column == "entitlement_id" else key)
        .order_by(func.sum(c.epsilon_micro).desc(), key))).all()
    name = "entitlement_id" if column == "entitlement_id" else "organisation_id"
    out = []
    for r in rows:
        item = {name: r[0], "answers": int(r[2]), "epsilon": int(r[3] or 0) / MICRO,
                "delta": int(r[4] or 0) / PICO}
        if column == "entitlement_id":
            item["organisation_id"] = r[1]
        out.append(item)
    return out


async def budget_rows(session: AsyncSession, product_id: str | None, period: str | None) -> list[Any]:
    b = privacy_budgets.c
    stmt = select(privacy_budgets).order_by(b.product_id, b.period.desc())
    if product_id is not None:
        stmt = stmt.where(b.product_id == product_id)
    if period is not None:
        stmt = stmt.where(b.period == period)
    return list((await session.execute(stmt)).mappings().all())


async def charges(session: AsyncSession, product_id: str, period: str | None, after_id: int,
                  limit: int) -> list[Any]:
    c = privacy_charges.c
    stmt = select(privacy_charges).where(c.product_id == product_id, c.id > after_id)
    if period is not None:
        stmt = stmt.where(c.period == period)
    return list((await session.execute(stmt.order_by(c.id).limit(limit + 1))).mappings().all())
