"""Exact answers of L1/L2 products: rows and aggregates, capped, masked columns masked.

L3 answers never come from here: they are differentially private and built by
:mod:`services.dataservice.dp_answer` (the minimum-group-size suppression and the
differencing history that used to guard exact L3 answers are gone; DP replaces them).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.dataservice.compiler import Plan, Rules
from services.dataservice.query_model import Query


def jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


@dataclass
class Answer:
    columns: list[str]
    rows: list[list[Any]]
    suppressed_groups: int
    truncated: bool


def assemble_aggregate(plan: Plan, rows: Sequence[Any], query: Query, rules: Rules) -> Answer:
    """Exact aggregate rows (SQL already ordered and limited them to the cap + 1)."""
    cap = min(query.limit, rules.max_rows)
    out: list[list[Any]] = []
    for r in rows[:cap]:
        m = r._mapping
        out.append([jsonable(m[lbl]) for lbl in plan.select_labels]
                   + [jsonable(m[part.labels[0]]) for part in plan.aggs])
    return Answer(plan.columns, out, 0, len(rows) > cap)


def assemble_rows(plan: Plan, rows: Sequence[Any], query: Query, rules: Rules) -> Answer:
    cap = min(query.limit, rules.max_rows)
    out = [
        [rules.mask_value if i in plan.masked_outputs else jsonable(v)
         for i, v in enumerate(r)]
        for r in rows[:cap]
    ]
    return Answer(plan.columns, out, 0, len(rows) > cap)
