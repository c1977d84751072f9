"""Privacy guardrails of aggregate answers: minimum group size with complementary
suppression, differencing checks, and Laplace noise.

* **Minimum group size k**: every group is counted in distinct people
  (``COUNT(DISTINCT person_column)``); groups with fewer than k are withheld.
* **Complementary suppression**: the withheld groups together must cover 0 or at least
  k people, otherwise the smallest shown groups are withheld too. A buyer who asks
  for the total (or sums the other groups) then learns at most an aggregate over k or
  more people, never a small group's value.
* **Differencing**: two answers over row sets that differ by 1..k-1 people reveal
  those people's values by subtraction. Before answering a filtered query we count,
  per shown group, the distinct people in the *symmetric difference* between the new
  filter's rows and (a) the unfiltered rows and (b) the rows of each earlier filtered
  query of the same entitlement (last N). Any count in 1..k-1 refuses the query. This
  is stricter than comparing counts: swapping one person for another (equal counts)
  is caught as well.
* **Laplace noise**: an optional epsilon is split evenly over the noisy SQL aggregates;
  the scale is sensitivity/share, with sensitivity = rows per person × clamping bound.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dataservice.compiler import (
    AggPart,
    Plan,
    QueryRefused,
    Rules,
    people_expr,
    where_clause,
)
from services.dataservice.datasource import BoundProduct
from services.dataservice.query_model import Filter, Query

_rng = secrets.SystemRandom()


def jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def where_fingerprint(filters: Sequence[Filter]) -> str:
    """Order-insensitive fingerprint of a where clause."""
    canon = sorted(json.dumps(f.model_dump(), sort_keys=True, default=str) for f in filters)
    return hashlib.sha256(json.dumps(canon).encode()).hexdigest()


# --- minimum group size -----------------------------------------------------------

def suppress(people: list[int], k: int) -> set[int]:
    """Indices of groups to withhold: those under k, plus complementary ones."""
    hidden = {i for i, n in enumerate(people) if n < k}
    hidden_people = sum(people[i] for i in hidden)
    if 0 < hidden_people < k:
        for i in sorted((i for i in range(len(people)) if i not in hidden), key=lambda i: people[i]):
            hidden.add(i)
            hidden_people += people[i]
            if hidden_people >= k:
                break
    return hidden


# --- differencing -----------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """A row set the new answer must not differ from by 1..k-1 people."""

    filters: list[Filter]
    label: str  # "unfiltered" or "earlier"


def _flag(cond: ColumnElement[bool] | None) -> ColumnElement[Any]:
    # NULL comparisons count as "not matched" on every backend.
    return literal(1) if cond is None else case((cond, 1), else_=0)


async def check_differencing(
    conn: AsyncConnection,
    bp: BoundProduct,
    query: Query,
    shown_groups: set[tuple[Any, ...]],
    earlier: Sequence[list[Filter]],
    k: int,
) -> None:
    """Refuse (QueryRefused) if the new filter's rows differ from the unfiltered rows or
    an earlier query's rows by 1..k-1 people in a shown group."""
    if not query.where or not shown_groups:
        return
    comparisons = [Comparison([], "unfiltered")] + [Comparison(f, "earlier") for f in earlier]
    current = _flag(where_clause(bp, query.where))
    cols: list[ColumnElement[Any]] = [bp.column(n).label(f"g{i}") for i, n in enumerate(query.group_by)]
    for j, cmp in enumerate(comparisons):
        cols.append(people_expr(bp, current != _flag(where_clause(bp, cmp.filters))).label(f"d{j}"))
    stmt = select(*cols)
    if query.group_by:
        stmt = stmt.group_by(*(bp.column(n) for n in query.group_by))
    ngroup = len(query.group_by)
    for row in (await conn.execute(stmt)).all():
        key = tuple(row[:ngroup])
        if key not in shown_groups:
            continue
        for j, cmp in enumerate(comparisons):
            differ = int(row[ngroup + j] or 0)
            if 0 < differ < k:
                if cmp.label == "unfiltered":
                    raise QueryRefused(
                        f"These filters would single out fewer than {k} people (they leave out "
                        f"1 to {k - 1} people of a group), so the answer could be subtracted "
                        "from the unfiltered one. Widen or drop the filters.",
                        rule="differencing")
                raise QueryRefused(
                    f"Together with an earlier query of this entitlement, this answer would "
                    f"single out fewer than {k} people (the two filters differ by 1 to {k - 1} "
                    "people in a group). Use filters that differ by whole groups.",
                    rule="differencing")


# --- noise ------------------------------------------------------------------------

def laplace(scale: float) -> float:
    """One Laplace(0, scale) sample from the OS random source (inverse CDF)."""
    u = _rng.random() - 0.5
    return -scale * math.copysign(1.0, u) * math.log(1.0 - 2.0 * abs(u))


def noisy_value(part: AggPart, raw: list[Any], bp: BoundProduct, share: float) -> Any:
    """The aggregate's value with noise: counts ±(rows per person)/share, sums and the
    sum inside an average ±(rows per person × bound)/share."""
    per_person = bp.mapping.max_rows_per_person
    fn = part.agg.fn
    if fn in ("count", "count_distinct"):
        return max(0, round(float(raw[0] or 0) + laplace(per_person / share)))
    lo, hi = bp.mapping.bounds[str(part.agg.column)]
    bound = max(abs(lo), abs(hi))
    total = float(raw[0] or 0) + laplace(per_person * bound / share)
    if fn == "sum":
        return round(total, 2)
    count = max(1.0, float(raw[1] or 0) + laplace(per_person / share))
    return round(min(hi, max(lo, total / count)), 2)


def noise_share(plan: Plan, epsilon: float) -> float:
    """Epsilon per noisy SQL aggregate (sequential composition over them; groups are
    disjoint row sets, so one person's rows all count against the same vector)."""
    parts = sum(len(a.labels) for a in plan.aggs)
    return epsilon / max(1, parts)


# --- assembling the answer -----------------------------------------------------------

@dataclass
class Answer:
    columns: list[str]
    rows: list[list[Any]]
    suppressed_groups: int
    truncated: bool
    people_counts: list[int]


def assemble_aggregate(
    plan: Plan, rows: Sequence[Any], bp: BoundProduct, query: Query, rules: Rules
) -> tuple[Answer, set[tuple[Any, ...]]]:
    """Suppress, add noise, cap rows; return the answer and the keys of shown groups."""
    mappings = [r._mapping for r in rows]
    hidden: set[int] = set()
    people: list[int] = []
    if rules.k is not None and plan.people_label is not None:
        people = [int(m[plan.people_label] or 0) for m in mappings]
        hidden = suppress(people, rules.k)
    share = noise_share(plan, query.epsilon) if query.epsilon is not None else None
    out: list[list[Any]] = []
    shown: set[tuple[Any, ...]] = set()
    kept_people: list[int] = []
    for i, m in enumerate(mappings):
        if i in hidden:
            continue
        shown.add(tuple(m[lbl] for lbl in plan.group_labels))
        vals: list[Any] = [jsonable(m[lbl]) for lbl in plan.select_labels]
        for part in plan.aggs:
            raw = [m[lbl] for lbl in part.labels]
            vals.append(noisy_value(part, raw, bp, share) if share is not None else jsonable(raw[0]))
        out.append(vals)
        if people:
            kept_people.append(people[i])
    cap = min(query.limit, rules.max_rows)
    return Answer(plan.columns, out[:cap], len(hidden), len(out) > cap, kept_people[:cap]), shown


def assemble_rows(plan: Plan, rows: Sequence[Any], query: Query, rules: Rules) -> Answer:
    cap = min(query.limit, rules.max_rows)
    out = [
        [rules.mask_value if i in plan.masked_outputs else jsonable(v)
         for i, v in enumerate(r)]
        for r in rows[:cap]
    ]
    return Answer(plan.columns, out, 0, len(rows) > cap, [])
