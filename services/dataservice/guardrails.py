"""Privacy guardrails of aggregate answers: minimum group size with complementary
suppression, differencing checks, and Laplace noise.

* **Minimum group size k**: every group is counted in distinct people
  (``COUNT(DISTINCT person_column)``); groups with fewer than k are withheld.
* **Complementary suppression**: the withheld groups together must cover 0 or at least
  k distinct people (re-counted as one set in SQL), otherwise the smallest shown groups
  are withheld too. A buyer who asks
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

from sqlalchemy import ColumnElement, and_, case, distinct, func, literal, or_, select
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


def most_similar(current: Sequence[Filter], earlier: Sequence[list[Filter]], n: int) -> list[list[Filter]]:
    """The ``n`` earlier where clauses most like ``current`` (shared conditions, then shared
    columns, then recency; ``earlier`` is newest first), without exact repeats. Differencing
    needs two nearly equal row sets, which nearly always means nearly equal filters, so an
    attacker cannot push the telling earlier query out of view with unrelated ones."""
    cur_conds = {json.dumps(f.model_dump(), sort_keys=True, default=str) for f in current}
    cur_cols = {f.column for f in current}
    fp = where_fingerprint(current)

    def score(item: tuple[int, list[Filter]]) -> tuple[int, int, int]:
        pos, filters = item
        conds = {json.dumps(f.model_dump(), sort_keys=True, default=str) for f in filters}
        return (-len(conds & cur_conds), -len({f.column for f in filters} & cur_cols), pos)

    candidates = [(i, f) for i, f in enumerate(earlier) if where_fingerprint(f) != fp]
    return [f for _, f in sorted(candidates, key=score)[:n]]


# --- minimum group size -----------------------------------------------------------

#: Above this many withheld groups the union of their people is not re-counted in SQL
#: (the sum of per-group counts is used instead; see docs/dataservice.md).
MAX_UNION_GROUPS = 500
#: Complementary suppression normally settles in two or three rounds.
MAX_SUPPRESSION_ROUNDS = 50


def suppress(people: list[int], k: int, keys: Sequence[tuple[Any, ...]] | None = None) -> set[int]:
    """Indices of groups to withhold: those under k, plus complementary ones.

    A buyer can ask for any coarser grouping of the same rows (drop one or more group_by
    columns, down to the plain total) and subtract the shown groups. So within every
    partition by all group columns but one (for one column: the total), the withheld groups
    must hold 0 or at least k people; otherwise that partition's smallest shown groups are
    withheld too, until it holds k or nothing is left. Partitions by fewer columns are unions
    of those, so they are covered as well. People are summed per group here (see
    :func:`suppress_exactly` for the distinct re-count of the total)."""
    hidden = {i for i, n in enumerate(people) if n < k}
    if not hidden:
        return hidden
    width = len(keys[0]) if keys else 0
    dropped = range(width) if width > 0 else [None]
    changed, rounds = True, 0
    while changed:
        changed, rounds = False, rounds + 1
        if rounds > MAX_SUPPRESSION_ROUNDS:
            return set(range(len(people)))  # a pathological cascade: withhold everything
        for drop in dropped:
            partitions: dict[tuple[Any, ...], list[int]] = {}
            for i in range(len(people)):
                key = () if drop is None or keys is None else keys[i][:drop] + keys[i][drop + 1:]
                partitions.setdefault(key, []).append(i)
            for members in partitions.values():
                held = sum(people[i] for i in members if i in hidden)
                if not 0 < held < k:
                    continue
                for i in sorted((i for i in members if i not in hidden), key=lambda i: people[i]):
                    hidden.add(i)
                    held += people[i]
                    changed = True
                    if held >= k:
                        break
    return hidden


def _group_match(bp: BoundProduct, group_by: list[str], key: tuple[Any, ...]) -> ColumnElement[bool]:
    return and_(*(bp.column(n).is_(None) if v is None else bp.column(n) == v
                  for n, v in zip(group_by, key, strict=True)))


async def suppress_exactly(
    conn: AsyncConnection, bp: BoundProduct, query: Query, keys: list[tuple[Any, ...]],
    people: list[int], k: int,
) -> set[int]:
    """:func:`suppress`, then re-count the withheld groups' people as one set: a person
    with rows in several withheld groups must count once, so more groups may be withheld."""
    hidden = suppress(people, k, keys)
    if not hidden or not query.group_by or bp.mapping.person_column is None:
        return hidden
    where = where_clause(bp, query.where)
    while len(hidden) < len(people) and len(hidden) <= MAX_UNION_GROUPS:
        stmt = select(people_expr(bp)).where(
            or_(*(_group_match(bp, query.group_by, keys[i]) for i in sorted(hidden))))
        if where is not None:
            stmt = stmt.where(where)
        union = int((await conn.execute(stmt)).scalar_one() or 0)
        if union == 0 or union >= k:
            break
        hidden.add(min((i for i in range(len(people)) if i not in hidden), key=lambda i: people[i]))
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


#: Bound parameters per differencing statement (SQLite and asyncpg allow about 32 000).
PARAM_BUDGET = 20_000


def _param_count(filters: Sequence[Filter]) -> int:
    return sum(len(f.value) if isinstance(f.value, list) else 1 for f in filters)


def _batches(comparisons: list[Comparison], budget: int) -> list[list[Comparison]]:
    batches: list[list[Comparison]] = [[]]
    used = 0
    for cmp in comparisons:
        cost = _param_count(cmp.filters)
        if batches[-1] and used + cost > budget:
            batches.append([])
            used = 0
        batches[-1].append(cmp)
        used += cost
    return batches


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
    budget = max(1, PARAM_BUDGET - _param_count(query.where))
    for batch in _batches(comparisons, budget):
        await _check_batch(conn, bp, query, shown_groups, batch, k)


async def _check_batch(
    conn: AsyncConnection, bp: BoundProduct, query: Query, shown_groups: set[tuple[Any, ...]],
    comparisons: list[Comparison], k: int,
) -> None:
    # Each row's match flags are computed once in a subquery, so the new filter's values
    # are bound once however many earlier queries it is compared with.
    person = bp.mapping.person_column
    inner_cols: list[ColumnElement[Any]] = [bp.column(n).label(f"g{i}") for i, n in enumerate(query.group_by)]
    inner_cols.append((bp.column(person) if person else literal(1)).label("who"))
    inner_cols.append(_flag(where_clause(bp, query.where)).label("cur"))
    inner_cols += [_flag(where_clause(bp, c.filters)).label(f"p{j}") for j, c in enumerate(comparisons)]
    inner = select(*inner_cols).subquery("flags")
    cols: list[ColumnElement[Any]] = [inner.c[f"g{i}"] for i in range(len(query.group_by))]
    for j in range(len(comparisons)):
        differs = inner.c.cur != inner.c[f"p{j}"]
        if person:
            cols.append(func.count(distinct(case((differs, inner.c.who), else_=None))))
        else:
            cols.append(func.coalesce(func.sum(case((differs, 1), else_=0)), 0))
    stmt = select(*cols)
    if query.group_by:
        stmt = stmt.group_by(*(inner.c[f"g{i}"] for i in range(len(query.group_by))))
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


async def assemble_aggregate(
    conn: AsyncConnection, plan: Plan, rows: Sequence[Any], bp: BoundProduct, query: Query,
    rules: Rules,
) -> tuple[Answer, set[tuple[Any, ...]]]:
    """Suppress, add noise, cap rows; return the answer and the keys of shown groups."""
    mappings = [r._mapping for r in rows]
    keys = [tuple(m[lbl] for lbl in plan.group_labels) for m in mappings]
    hidden: set[int] = set()
    if rules.k is not None and plan.people_label is not None:
        people = [int(m[plan.people_label] or 0) for m in mappings]
        hidden = await suppress_exactly(conn, bp, query, keys, people, rules.k)
    share = noise_share(plan, query.epsilon) if query.epsilon is not None else None
    out: list[list[Any]] = []
    shown: set[tuple[Any, ...]] = set()
    for i, m in enumerate(mappings):
        if i in hidden:
            continue
        shown.add(keys[i])
        vals: list[Any] = [jsonable(m[lbl]) for lbl in plan.select_labels]
        for part in plan.aggs:
            raw = [m[lbl] for lbl in part.labels]
            vals.append(noisy_value(part, raw, bp, share) if share is not None else jsonable(raw[0]))
        out.append(vals)
    if share is not None and query.order_by:
        # SQL ordered by the exact values; re-order by the noisy ones so the order leaks nothing.
        out = order_rows(out, plan.columns, query)
    cap = min(query.limit, rules.max_rows)
    return Answer(plan.columns, out[:cap], len(hidden), len(out) > cap), shown


def order_rows(rows: list[list[Any]], columns: list[str], query: Query) -> list[list[Any]]:
    for ob in reversed(query.order_by):
        if ob.column not in columns:
            continue  # ordered by a grouped column not in the output: SQL order stands
        idx = columns.index(ob.column)
        rows = sorted(rows, key=lambda r: (r[idx] is None, r[idx]), reverse=ob.dir == "desc")
    return rows


def assemble_rows(plan: Plan, rows: Sequence[Any], query: Query, rules: Rules) -> Answer:
    cap = min(query.limit, rules.max_rows)
    out = [
        [rules.mask_value if i in plan.masked_outputs else jsonable(v)
         for i, v in enumerate(r)]
        for r in rows[:cap]
    ]
    return Answer(plan.columns, out, 0, len(rows) > cap)
