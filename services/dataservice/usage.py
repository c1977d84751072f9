"""Per-entitlement quota and privacy-budget counters, and usage reports.

The counters are changed by one conditional ``UPDATE`` whose ``WHERE`` re-checks the
limits, so 50 concurrent queries near the limit cannot overspend: on PostgreSQL each
UPDATE waits for the row lock and re-evaluates the condition on the newest row; on
SQLite writers are serialised. A usage record goes into the outbox in the same
transaction, so a down access service delays the report but never loses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dataservice.models import entitlement_usage
from shared.db import utcnow
from shared.errors import Forbidden
from shared.outbox import OutboxMessage, enqueue
from shared.relays import HttpDelivery, Outgoing, Relay

MICRO = 1_000_000


def to_micro(epsilon: float | None) -> int:
    """A budget in millionths of ε (the nearest; charges round up, see budget.request_micro)."""
    return 0 if epsilon is None else round(epsilon * MICRO)


class QuotaExhausted(Forbidden):
    problem, title = "quota-exhausted", "Query quota used up"


class BudgetExhausted(Forbidden):
    """The entitlement's own share of ε (what its plan sold) cannot pay for the query."""

    problem, title = "privacy-budget-exhausted", "Privacy budget used up"


@dataclass(frozen=True)
class Limits:
    query_quota: int | None
    epsilon_budget_micro: int | None


@dataclass(frozen=True)
class UsageState:
    queries_used: int
    epsilon_used_micro: int

    def queries_remaining(self, limits: Limits) -> int | None:
        return None if limits.query_quota is None else max(0, limits.query_quota - self.queries_used)

    def epsilon_remaining(self, limits: Limits) -> float | None:
        if limits.epsilon_budget_micro is None:
            return None
        return max(0, limits.epsilon_budget_micro - self.epsilon_used_micro) / MICRO


async def insert_ignore(session: AsyncSession, table: Table, values: dict[str, Any],
                         keys: list[str]) -> None:
    """INSERT that does nothing when the row exists (race-safe on both back ends)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        await session.execute(pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))
    elif dialect == "sqlite":
        await session.execute(
            sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))
    else:  # pragma: no cover - only the two supported back ends
        exists = await session.execute(select(*(table.c[k] for k in keys)).filter_by(
            **{k: values[k] for k in keys}))
        if exists.first() is None:
            await session.execute(insert(table).values(**values))


async def update_or_create(session: AsyncSession, table: Table, row: dict[str, Any], keys: list[str],
                           conditional_update: Any) -> Any:
    """Run a conditional ``UPDATE ... RETURNING``; if its row does not exist yet, create it
    (race-safe) and run it once more. One statement in the common case; None when the
    condition refuses."""
    found = (await session.execute(conditional_update)).first()
    if found is not None:
        return found
    await insert_ignore(session, table, row, keys)
    return (await session.execute(conditional_update)).first()


async def current(session: AsyncSession, entitlement_id: str) -> UsageState:
    row = (await session.execute(
        select(entitlement_usage.c.queries_used, entitlement_usage.c.epsilon_used_micro)
        .where(entitlement_usage.c.entitlement_id == entitlement_id))).first()
    return UsageState(0, 0) if row is None else UsageState(int(row[0]), int(row[1]))


def refuse_if_spent(state: UsageState, limits: Limits, epsilon_micro: int) -> None:
    """Raise the problem that says which limit is used up and what to do."""
    if limits.query_quota is not None and state.queries_used + 1 > limits.query_quota:
        raise QuotaExhausted(
            f"This entitlement's query quota ({limits.query_quota} queries) is used up. Buy more "
            "queries or a larger plan in the catalog, then get a new token.",
            query_quota=limits.query_quota, queries_used=state.queries_used)
    if limits.epsilon_budget_micro is not None \
            and state.epsilon_used_micro + epsilon_micro > limits.epsilon_budget_micro:
        left = max(0, limits.epsilon_budget_micro - state.epsilon_used_micro) / MICRO
        raise BudgetExhausted(
            f"This query's epsilon ({epsilon_micro / MICRO:g}) is more than what is left of this "
            f"entitlement's privacy budget ({left:g} of {limits.epsilon_budget_micro / MICRO:g}, what "
            "its plan granted; it does not renew). Ask with a smaller epsilon, or buy a plan with "
            "more epsilon in the catalog and get a new token.",
            budget="entitlement", renews_at=None, epsilon_budget=limits.epsilon_budget_micro / MICRO,
            epsilon_remaining=left, epsilon_needed=epsilon_micro / MICRO)


async def charge(
    session: AsyncSession, entitlement_id: str, product_id: str, limits: Limits,
    epsilon_micro: int, rows: int,
) -> UsageState:
    """Count one query (and its epsilon) if both stay within the limits; else refuse."""
    now = utcnow()
    t = entitlement_usage.c
    conditions = [t.entitlement_id == entitlement_id]
    if limits.query_quota is not None:
        conditions.append(t.queries_used + 1 <= limits.query_quota)
    if limits.epsilon_budget_micro is not None:
        conditions.append(t.epsilon_used_micro + epsilon_micro <= limits.epsilon_budget_micro)
    row = await update_or_create(session, entitlement_usage, {
        "entitlement_id": entitlement_id, "product_id": product_id, "queries_used": 0,
        "epsilon_used_micro": 0, "rows_returned": 0, "updated_at": now,
    }, ["entitlement_id"], update(entitlement_usage).where(*conditions).values(
        queries_used=t.queries_used + 1,
        epsilon_used_micro=t.epsilon_used_micro + epsilon_micro,
        rows_returned=t.rows_returned + rows,
        updated_at=now,
    ).returning(t.queries_used, t.epsilon_used_micro))
    if row is None:
        refuse_if_spent(await current(session, entitlement_id), limits, epsilon_micro)
        raise QuotaExhausted("This entitlement's limits are used up.")  # pragma: no cover
    return UsageState(int(row[0]), int(row[1]))


# --- usage reports (outbox → access) ------------------------------------------------------

USAGE_KIND = "usage"
USAGE_DESTINATION = "access"


def usage_record(*, entitlement_id: str, jti: str, product_id: str, rows_returned: int,
                 suppressed_groups: int, epsilon_spent: float, occurred_at: datetime) -> dict[str, Any]:
    """The usage record of docs/contracts.md."""
    return {
        "usage_id": str(uuid.uuid4()), "entitlement_id": entitlement_id, "jti": jti,
        "product_id": product_id, "rows_returned": rows_returned,
        "suppressed_groups": suppressed_groups, "epsilon_spent": epsilon_spent,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
    }


async def enqueue_usage(session: AsyncSession, record: dict[str, Any]) -> None:
    await enqueue(session, kind=USAGE_KIND, destination=USAGE_DESTINATION,
                  message_id=record["usage_id"], payload=record)


def _usage_record(run: Sequence[OutboxMessage]) -> Outgoing:
    [m] = run
    return Outgoing("POST", "/v1/usage", m.payload)


#: POST each usage record to the access service (409: already recorded, delivered). Nothing
#: follows a delivery here, so no ``on_delivered`` hook.
USAGE_DELIVERY = HttpDelivery("access", "access_url", _usage_record)
USAGE_RELAY = Relay(USAGE_DESTINATION, USAGE_DELIVERY, what="usage reports")
