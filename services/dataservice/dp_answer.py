"""L3 answers: statistics, groups, exact aggregates on the bounded copy, noise, post-processing.

Nothing exact leaves: every released number is an OpenDP measurement's output or computed
from such outputs (post-processing: rounding, clamping, mean = noisy sum / noisy count,
withholding groups whose *noisy* count is below k, ordering, truncation). The group keys of
an answer are either public (the mapping's ``domains``: every combination is released,
zero counts included) or chosen by OpenDP's noisy threshold. Which groups appear therefore
never depends on the data except through a DP mechanism, and nothing is refused because of
the data: refusals depend only on the query's shape, the token and the budgets.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dataservice.compiler import InvalidQuery, QueryRefused, where_clause
from services.dataservice.datasource import BoundProduct, ValueTypeError, coerce_value
from services.dataservice.privacy import DPPlan, Mechanism, Stat, mean_interval
from services.dataservice.query_model import Aggregate, Filter, Query
from services.dataservice.releases import Release

#: Most public key combinations one answer may release (a query-shape limit).
MAX_KEYS = 10_000
#: Exact aggregates kept per process (they never leave it; each answer draws fresh noise).
CACHE_ENTRIES = 512


@dataclass(frozen=True)
class Output:
    """One aggregate output column and the statistics it is computed from."""

    agg: Aggregate
    stats: tuple[Stat, ...]  # (count) (sum) (count_distinct) or, for avg, (sum, count)


@dataclass
class Statistics:
    stats: list[Stat]
    outputs: list[Output]
    keys: list[tuple[Any, ...]] | None  # public keys, or None: chosen by noisy threshold

    @property
    def row_count(self) -> Stat | None:
        """The noisy count k is applied to: the row count, else the count behind a mean."""
        for s in self.stats:
            if s.kind == "count" and s.column is None:
                return s
        return next((o.stats[1] for o in self.outputs if o.agg.fn == "avg"), None)


def _bound(bp: BoundProduct, column: str) -> float:
    lo, hi = bp.mapping.bounds[column]
    return max(abs(lo), abs(hi))


def _count_of(bp: BoundProduct, column: str | None, m: int) -> Stat:
    # count(col) equals count(*) on a NOT NULL column: one statistic, one share of epsilon.
    if column is not None and not bp.column(column).nullable:
        column = None
    return Stat("count", column, True, m)


def statistics(query: Query, bp: BoundProduct, threshold: bool) -> tuple[list[Stat], list[Output]]:
    """The vector statistics behind the query's aggregates (shared where they coincide)."""
    m = bp.mapping.max_rows_per_person
    outputs: list[Output] = []
    for agg in query.aggregates:
        col = agg.column
        if agg.fn == "count":
            outputs.append(Output(agg, (_count_of(bp, col, m),)))
        elif agg.fn == "count_distinct":
            outputs.append(Output(agg, (Stat("count_distinct", col, True, m),)))
        else:
            assert col is not None
            integer = bp.kind(col) == "int"
            sens = m * _bound(bp, col)
            total = Stat("sum", col, integer, int(sens) if integer else float(sens))
            outputs.append(Output(agg, (total,) if agg.fn == "sum" else (total, _count_of(bp, col, m))))
    stats: list[Stat] = []
    if threshold:
        stats.append(Stat("count", None, True, m))
    for out in outputs:
        stats.extend(s for s in out.stats if s not in stats)
    return stats, outputs


def _matches(flt: Filter, value: Any, kind: str) -> bool:
    """Whether a public key value passes a filter on its column (decided on the query alone)."""
    op = flt.op
    if op == "in":
        return value in {coerce_value(kind, v) for v in flt.value}
    if op == "between":
        lo, hi = (coerce_value(kind, v) for v in flt.value)
        return bool(lo <= value <= hi)
    other = coerce_value(kind, flt.value)
    return bool({"eq": value == other, "ne": value != other, "lt": value < other,
                 "le": value <= other, "gt": value > other, "ge": value >= other}[op])


def public_keys(query: Query, bp: BoundProduct) -> list[tuple[Any, ...]] | None:
    """Every combination of the grouped columns' declared values that the filters allow,
    or None when a grouped column has no public key list."""
    domains = bp.mapping.domains
    if any(g not in domains for g in query.group_by):
        return None
    values: list[list[Any]] = []
    for g in query.group_by:
        kind = bp.kind(g)
        try:
            vals = [coerce_value(kind, v) for v in domains[g]]
            for flt in query.where:
                if flt.column == g:
                    vals = [v for v in vals if _matches(flt, v, kind)]
        except (ValueTypeError, TypeError) as exc:
            raise InvalidQuery(f"The declared values of {g!r} cannot be compared with the filter "
                               f"on it ({exc}).") from exc
        values.append(vals)
    size = 1
    for v in values:
        size *= len(v)
    if size > MAX_KEYS:
        raise QueryRefused(
            f"Grouping by {', '.join(query.group_by)} makes {size} groups; at most {MAX_KEYS} can be "
            "released at once. Group by fewer columns or filter some values out.",
            rule="too-many-groups")
    return [tuple(k) for k in itertools.product(*values)]


# --- exact aggregates on the bounded copy (never released) -----------------------------

def exact_statement(release: Release, query: Query, stats: Sequence[Stat]) -> Any:
    bp = release.bound
    cols: list[ColumnElement[Any]] = [bp.column(g).label(f"g{i}") for i, g in enumerate(query.group_by)]
    for j, s in enumerate(stats):
        if s.kind == "count":
            expr: ColumnElement[Any] = func.count() if s.column is None else func.count(bp.column(s.column))
        elif s.kind == "count_distinct":
            expr = func.count(distinct(bp.column(str(s.column))))
        else:
            expr = func.sum(release.clamped_column(str(s.column)))
        cols.append(expr.label(f"s{j}"))
    stmt = select(*cols)
    where = where_clause(bp, query.where)
    if where is not None:
        stmt = stmt.where(where)
    if query.group_by:
        stmt = stmt.group_by(*(bp.column(g) for g in query.group_by))
    return stmt


class ExactCache:
    """Exact aggregates per (release, query shape), in this process only. Sound under DP:
    every answer still draws fresh noise, and the exact values never leave."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._data: OrderedDict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(release: Release, query: Query, stats: Sequence[Stat]) -> str:
        return json.dumps([release.table_name, query.group_by,
                           [f.model_dump(mode="json") for f in query.where],
                           [[s.kind, s.column] for s in stats]], sort_keys=True, default=str)

    async def get(self, engine: AsyncEngine, release: Release, query: Query, stats: Sequence[Stat], *,
                  before_reading: Callable[[], Awaitable[None]] | None = None,
                  ) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The exact aggregates, from memory or from the copy (``before_reading`` runs first,
        only when the copy has to be read)."""
        key = self.key(release, query, stats)
        found = self._data.get(key)
        if found is not None:
            self._data.move_to_end(key)
            self.hits += 1
            return found
        if before_reading is not None:
            await before_reading()
        self.misses += 1
        width = len(query.group_by)
        async with engine.connect() as conn:
            rows = (await conn.execute(exact_statement(release, query, stats))).all()
        value = {tuple(r[:width]): tuple(r[width:]) for r in rows}
        self._data[key] = value
        while len(self._data) > self.entries:
            self._data.popitem(last=False)
        return value


# --- noise and post-processing ---------------------------------------------------------

@dataclass
class Noisy:
    """The released values: group keys and, per statistic, one noisy value per key."""

    keys: list[tuple[Any, ...]]
    values: dict[Stat, list[Any]] = field(default_factory=dict)


def _zero(stat: Stat) -> int | float:
    return 0 if stat.integer else 0.0


def release_noisy(plan: DPPlan, spec: Statistics, exact: dict[tuple[Any, ...], tuple[Any, ...]]) -> Noisy:
    """Apply every mechanism of the plan to its statistic's vector."""
    index = {s: j for j, s in enumerate(spec.stats)}

    def exact_of(key: tuple[Any, ...], stat: Stat) -> Any:
        row = exact.get(key)
        v = None if row is None else row[index[stat]]
        return _zero(stat) if v is None else (int(v) if stat.integer else float(v))

    selection = plan.selection
    if spec.keys is not None:
        noisy = Noisy(list(spec.keys))
    else:
        assert selection is not None
        by_text = {json.dumps(list(k), default=str): k for k in exact}
        chosen = selection.select({t: exact_of(k, selection.stat) for t, k in by_text.items()})
        ordered = sorted(chosen)
        noisy = Noisy([by_text[t] for t in ordered], {selection.stat: [chosen[t] for t in ordered]})
    for mech in plan.mechanisms:
        if mech.stat in noisy.values:
            continue
        noisy.values[mech.stat] = mech.release([exact_of(k, mech.stat) for k in noisy.keys])
    return noisy


def _value(out: Output, noisy: Noisy, i: int, bp: BoundProduct) -> Any:
    first = noisy.values[out.stats[0]][i]
    if out.agg.fn in ("count", "count_distinct"):
        return max(0, int(first))
    if out.agg.fn == "sum":
        return int(first) if out.stats[0].integer else round(float(first), 2)
    lo, hi = bp.mapping.bounds[str(out.agg.column)]
    count = max(1, int(noisy.values[out.stats[1]][i]))
    return round(min(hi, max(lo, float(first) / count)), 4)


@dataclass
class DPAnswer:
    columns: list[str]
    rows: list[list[Any]]
    withheld: int
    truncated: bool
    accuracy: list[dict[str, Any]]


def assemble(plan: DPPlan, spec: Statistics, noisy: Noisy, query: Query, bp: BoundProduct,
             k: int, cap: int) -> DPAnswer:
    """Rows from the noisy values, withholding groups whose noisy count is below k."""
    by_output = {n: i for i, n in enumerate(query.group_by)}
    k_stat = spec.row_count
    rows: list[tuple[int, list[Any]]] = []
    withheld = 0
    for i, key in enumerate(noisy.keys):
        if k_stat is not None and int(noisy.values[k_stat][i]) < k:
            withheld += 1
            continue
        vals = [key[by_output[n]] for n in query.select]
        vals += [_value(out, noisy, i, bp) for out in spec.outputs]
        rows.append((i, vals))
    columns = [*query.select, *(o.agg.output_name for o in spec.outputs)]
    rows = _ordered(rows, columns, query, noisy.keys, by_output)
    kept = rows[:cap]
    return DPAnswer(columns, [r for _, r in kept], withheld, len(rows) > cap,
                    accuracy(plan, spec, noisy, [i for i, _ in kept], bp))


def _ordered(rows: list[tuple[int, list[Any]]], columns: list[str], query: Query,
             keys: list[tuple[Any, ...]], by_output: dict[str, int]) -> list[tuple[int, list[Any]]]:
    for ob in reversed(query.order_by):
        if ob.column in columns:
            idx = columns.index(ob.column)
            rows = sorted(rows, key=lambda r: (r[1][idx] is None, r[1][idx]), reverse=ob.dir == "desc")
        else:  # a grouped column that is not selected
            g = by_output[ob.column]
            rows = sorted(rows, key=lambda r: (keys[r[0]][g] is None, keys[r[0]][g]),
                          reverse=ob.dir == "desc")
    return rows


def _describe(mech: Mechanism) -> dict[str, Any]:
    return {"mechanism": mech.name, "statistic": mech.stat.label, "scale": mech.scale,
            "epsilon": round(float(mech.epsilon), 6), "ci95_half_width": mech.half_width()}


def accuracy(plan: DPPlan, spec: Statistics, noisy: Noisy, shown: list[int],
             bp: BoundProduct) -> list[dict[str, Any]]:
    """Per output column: mechanism, noise scale, ε spent on it and the 95 % half-width;
    a mean gets a 95 % interval per row instead (from its sum's and count's 97.5 % ones)."""
    out: list[dict[str, Any]] = []
    for o in spec.outputs:
        if o.agg.fn != "avg":
            out.append({"column": o.agg.output_name, **_describe(plan.mechanism(o.stats[0]))})
            continue
        total, count = (plan.mechanism(s) for s in o.stats)
        lo, hi = bp.mapping.bounds[str(o.agg.column)]
        s_half, c_half = total.half_width(0.025), count.half_width(0.025)
        sums, counts = noisy.values[total.stat], noisy.values[count.stat]
        intervals = [mean_interval(float(sums[i]), float(counts[i]), s_half, c_half, lo, hi)
                     for i in shown]
        out.append({"column": o.agg.output_name, "statistic": f"mean({o.agg.column})",
                    "mechanism": "noisy sum / noisy count (post-processing)",
                    "epsilon": float(total.epsilon + (count.epsilon if count.stat != total.stat else 0)),
                    "scale": None, "ci95_half_width": None,
                    "ci95_intervals": [[round(a, 4), round(b, 4)] for a, b in intervals],
                    "from": [_describe(total), _describe(count)]})
    return out
