"""Structured query → SQLAlchemy Core, after checking every name against the mapping.

Injection cannot happen by construction: column names are looked up in the product's
whitelist (the reflected, mapped columns) and become ``Column`` objects, operators and
functions come from fixed tables, output names are internal labels, and every value is
a bound parameter of the column's type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, distinct, func, select

from services.dataservice.config import grade_rank
from services.dataservice.datasource import BoundProduct, ValueTypeError, coerce_value
from services.dataservice.query_model import FNS, MAX_IN_VALUES, OPS, Aggregate, Filter, Query
from shared.errors import RuleViolation

NUMERIC = ("int", "float")
#: Functions with a differentially private answer (min and max have none: one person decides them).
NOISE_FNS = ("count", "count_distinct", "sum", "avg")


class InvalidQuery(RuleViolation):
    """The query names something that does not exist or is not allowed (422)."""

    problem, title = "invalid-query", "The query is not valid"


class QueryRefused(RuleViolation):
    """A privacy guardrail refused the query (422); ``rule`` says which."""

    problem, title = "query-refused", "A privacy guardrail refused the query"


@dataclass(frozen=True)
class Rules:
    """The effective guardrails: the stricter of the token and the provider mapping."""

    grade: str
    max_rows: int
    k: int | None  # L3: groups whose noisy count is below k are withheld; None below L3
    mask_value: str

    @property
    def aggregates_only(self) -> bool:
        return grade_rank(self.grade) >= grade_rank("L3_sensitive")


@dataclass
class AggPart:
    """One aggregate as computed: its SQL labels and how to turn them into a value."""

    agg: Aggregate
    labels: list[str]
    kind: str  # column kind ("int"/"float"/...) or "count"


@dataclass
class Plan:
    """An exact (L1/L2) query: its statement and how to read the rows."""

    stmt: Select[Any]
    columns: list[str]  # output column names, in order
    group_labels: list[str] = field(default_factory=list)
    select_labels: list[str] = field(default_factory=list)
    aggs: list[AggPart] = field(default_factory=list)
    masked_outputs: set[int] = field(default_factory=set)


def _err(errors: list[dict[str, str]], where: str, message: str) -> None:
    errors.append({"field": where, "message": message})


def check_query(query: Query, bp: BoundProduct, rules: Rules) -> None:
    """Raise InvalidQuery naming every unknown or unusable column, operator or function,
    then QueryRefused for the first guardrail the query's shape breaks."""
    m = bp.mapping
    exposed = m.column_names
    masked = set(m.masked)
    errors: list[dict[str, str]] = []
    available = ", ".join(exposed)

    def known(where: str, name: str, *, usable_masked: bool = False) -> bool:
        if name not in exposed:
            _err(errors, where, f"unknown column {name!r}; this product exposes: {available}")
            return False
        if name in masked and not usable_masked:
            _err(errors, where, f"column {name!r} is masked: it can be selected (masked) but "
                                "not filtered, grouped, ordered or aggregated on")
            return False
        return True

    for i, name in enumerate(query.select):
        known(f"select[{i}]", name, usable_masked=True)
        if query.is_aggregate and name not in query.group_by:
            _err(errors, f"select[{i}]", f"{name!r} must also be in group_by in an aggregate query")
    for i, name in enumerate(query.group_by):
        known(f"group_by[{i}]", name)
    if len(set(query.group_by)) != len(query.group_by):
        _err(errors, "group_by", "a column is listed twice")
    for i, agg in enumerate(query.aggregates):
        if agg.fn not in FNS:
            _err(errors, f"aggregates[{i}].fn", f"unknown function {agg.fn!r}; use one of: {', '.join(FNS)}")
            continue
        if agg.column is None:
            if agg.fn != "count":
                _err(errors, f"aggregates[{i}].column", f"{agg.fn} needs a column")
            continue
        if known(f"aggregates[{i}].column", agg.column) and agg.fn in ("sum", "avg") \
                and bp.kind(agg.column) not in NUMERIC:
            _err(errors, f"aggregates[{i}].column", f"{agg.fn} needs a numeric column; "
                                                    f"{agg.column!r} is {bp.kind(agg.column)}")
    outputs = [*query.select, *(a.output_name for a in query.aggregates)]
    if len(set(outputs)) != len(outputs):
        _err(errors, "aggregates", "two output columns have the same name; give one an 'as'")
    for i, flt in enumerate(query.where):
        if flt.op not in OPS:
            _err(errors, f"where[{i}].op", f"unknown operator {flt.op!r}; use one of: {', '.join(OPS)}")
        if known(f"where[{i}].column", flt.column) and flt.op in OPS:
            try:
                _values(flt, bp.kind(flt.column))
            except ValueTypeError as exc:
                _err(errors, f"where[{i}].value", str(exc))
    order_names = set(outputs) | set(query.group_by) if query.is_aggregate else None
    for i, ob in enumerate(query.order_by):
        if order_names is not None:
            if ob.column not in order_names:
                _err(errors, f"order_by[{i}].column", f"{ob.column!r} is not a grouped column or an "
                                                      "aggregate output of this query")
            elif ob.column in query.group_by:
                known(f"order_by[{i}].column", ob.column)
        else:
            known(f"order_by[{i}].column", ob.column)
    if errors:
        names = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        raise InvalidQuery(f"{len(errors)} problem(s) in the query: {names}. Fix them and retry; "
                           "GET /v1/schema lists what this product offers.", errors=errors)
    _check_shape(query, bp, rules)


def _check_shape(query: Query, bp: BoundProduct, rules: Rules) -> None:
    if rules.aggregates_only and not query.is_aggregate:
        raise QueryRefused(
            f"This product is graded {rules.grade}: it answers aggregate queries only, never rows. "
            "Add aggregates (count, sum, avg, ...) and group_by.", rule="aggregates-only")
    if not rules.aggregates_only:
        if query.epsilon is not None:
            raise QueryRefused("epsilon applies to L3_sensitive products only (their answers are "
                               "differentially private); drop 'epsilon' from the query.",
                               rule="noise-l3-only")
        return
    for a in query.aggregates:
        if a.fn in ("min", "max"):
            raise QueryRefused(
                f"{a.fn} is not offered on {rules.grade} products: it returns one person's own "
                "value and has no differentially private answer here. Use avg, or count over "
                "ranges.", rule="no-min-max")
        if a.fn in ("sum", "avg") and a.column not in bp.mapping.bounds:
            raise QueryRefused(
                f"{a.fn} of {a.column!r} needs clamping bounds, which the provider has not "
                "declared for that column (GET /v1/schema lists them); use count instead.",
                rule="noise-bounds")


def _values(flt: Filter, kind: str) -> Any:
    if flt.op == "in":
        if not isinstance(flt.value, list) or not 1 <= len(flt.value) <= MAX_IN_VALUES:
            raise ValueTypeError(f"'in' needs a list of 1 to {MAX_IN_VALUES} values")
        return [coerce_value(kind, v) for v in flt.value]
    if flt.op == "between":
        if not isinstance(flt.value, list) or len(flt.value) != 2:
            raise ValueTypeError("'between' needs a [low, high] pair")
        return [coerce_value(kind, v) for v in flt.value]
    try:
        return coerce_value(kind, flt.value)
    except ValueTypeError as exc:
        raise ValueTypeError(f"{flt.op!r} on this column needs {exc}") from exc


def where_clause(bp: BoundProduct, filters: list[Filter]) -> ColumnElement[bool] | None:
    """The filters as one bound-parameter expression (None when there are none)."""
    parts: list[ColumnElement[bool]] = []
    for flt in filters:
        col = bp.column(flt.column)
        v = _values(flt, bp.kind(flt.column))
        match flt.op:
            case "eq":
                parts.append(col == v)
            case "ne":
                parts.append(col != v)
            case "lt":
                parts.append(col < v)
            case "le":
                parts.append(col <= v)
            case "gt":
                parts.append(col > v)
            case "ge":
                parts.append(col >= v)
            case "in":
                parts.append(col.in_(v))
            case "between":
                parts.append(col.between(v[0], v[1]))
            case _:  # pragma: no cover - check_query refused it already
                raise InvalidQuery(f"unknown operator {flt.op!r}")
    if not parts:
        return None
    return and_(*parts)


def _agg_sql(agg: Aggregate, bp: BoundProduct) -> list[ColumnElement[Any]]:
    if agg.column is None:
        return [func.count()]
    col: ColumnElement[Any] = bp.column(agg.column)
    match agg.fn:
        case "count":
            return [func.count(col)]
        case "count_distinct":
            return [func.count(distinct(col))]
        case "sum":
            return [func.sum(col)]
        case "avg":
            return [func.avg(col)]
        case "min":
            return [func.min(col)]
        case _:
            return [func.max(col)]


def build_plan(query: Query, bp: BoundProduct, rules: Rules) -> Plan:
    """The SELECT of a checked L1/L2 query (``check_query`` first; L3 answers are built by
    :mod:`services.dataservice.dp_answer` on the bounded copy)."""
    where = where_clause(bp, query.where)
    if not query.is_aggregate:
        names = query.select or bp.mapping.column_names
        stmt = select(*(bp.column(n).label(f"c{i}") for i, n in enumerate(names)))
        if where is not None:
            stmt = stmt.where(where)
        stmt = stmt.order_by(*(bp.column(o.column).desc() if o.dir == "desc" else bp.column(o.column)
                               for o in query.order_by))
        # One more than allowed tells whether the answer was cut.
        stmt = stmt.limit(min(query.limit, rules.max_rows) + 1)
        masked = {i for i, n in enumerate(names) if n in bp.mapping.masked}
        return Plan(stmt, list(names), masked_outputs=masked)

    by_output: dict[str, ColumnElement[Any]] = {}
    cols: list[ColumnElement[Any]] = []
    group_labels: list[str] = []
    for i, name in enumerate(query.group_by):
        expr = bp.column(name)
        cols.append(expr.label(f"g{i}"))
        group_labels.append(f"g{i}")
        by_output[name] = expr
    aggs: list[AggPart] = []
    for i, agg in enumerate(query.aggregates):
        parts = _agg_sql(agg, bp)
        labels = [f"a{i}_{j}" for j in range(len(parts))]
        cols.extend(p.label(lbl) for p, lbl in zip(parts, labels, strict=True))
        kind = "count" if agg.fn in ("count", "count_distinct") else bp.kind(str(agg.column))
        aggs.append(AggPart(agg, labels, kind))
        by_output[agg.output_name] = parts[0]
    stmt = select(*cols)
    if where is not None:
        stmt = stmt.where(where)
    if query.group_by:
        stmt = stmt.group_by(*(bp.column(n) for n in query.group_by))
    stmt = stmt.order_by(*(by_output[o.column].desc() if o.dir == "desc" else by_output[o.column]
                           for o in query.order_by))
    stmt = stmt.limit(min(query.limit, rules.max_rows) + 1)
    select_labels = [group_labels[query.group_by.index(n)] for n in query.select]
    return Plan(stmt, [*query.select, *(a.agg.output_name for a in aggs)], group_labels,
                select_labels, aggs)
