"""Rows of the ``make bench`` table: a figure, its limit measured in the same run, the target.

A benchmark script adds rows and saves them; ``bench/run.py`` collects every script's rows
into one table and one JSON file under ``bench/results/``. Adding a row is one call::

    from bench.report import Report

    report = Report("dataservice")
    report.row("dataservice: L3 aggregate query", figure=312.0, unit="queries/s",
               limit=1_450.0, limit_label="the same SQL straight on the database",
               min_ratio=0.25)                      # and/or min_figure= / max_figure=
    report.save()                                   # also prints the rows

``met`` is computed from the targets given (all must hold); a row without a target is
informational (``met`` is ``None``). When the script runs under ``bench/run.py``,
``save()`` writes to the file named by ``SLUICE_BENCH_REPORT``; alone, it only prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    bench: str  # which script measured it
    path: str  # what was measured, e.g. "audit: append over HTTP, batches of 100"
    figure: float | None  # None: the measurement failed (see details["error"])
    unit: str
    limit: float | None = None  # the physical limit measured in the same run, same unit
    limit_label: str = ""
    ratio: float | None = None  # figure / limit (or limit / figure for latencies)
    min_figure: float | None = None
    max_figure: float | None = None
    min_ratio: float | None = None
    target: str = ""
    met: bool | None = None
    backend: str = "postgresql"
    workers: int = 1
    loadgen: str = ""  # "wrk", "python" or "" (measured in-process)
    details: dict[str, Any] = field(default_factory=dict)


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def describe_target(min_figure: float | None, max_figure: float | None, min_ratio: float | None,
                    unit: str) -> str:
    parts = []
    if min_figure is not None:
        parts.append(f"≥ {_num(min_figure)} {unit}")
    if max_figure is not None:
        parts.append(f"≤ {_num(max_figure)} {unit}")
    if min_ratio is not None:
        parts.append(f"ratio ≥ {min_ratio:.2f}")
    return ", ".join(parts)


def make_row(bench: str, path: str, *, figure: float | None, unit: str, limit: float | None = None,
             limit_label: str = "", min_figure: float | None = None, max_figure: float | None = None,
             min_ratio: float | None = None, lower_is_better: bool = False, **extra: Any) -> Row:
    """A row with its ratio and ``met`` worked out. For latencies (``lower_is_better``)
    the ratio is limit ÷ figure, so 1.0 is still "as fast as the limit"."""
    ratio = None
    if figure is not None and limit:
        ratio = round((limit / figure if lower_is_better else figure / limit), 3) if figure else 0.0
    checks: list[bool] = []
    if figure is not None:
        if min_figure is not None:
            checks.append(figure >= min_figure)
        if max_figure is not None:
            checks.append(figure <= max_figure)
    if min_ratio is not None and ratio is not None:
        checks.append(ratio >= min_ratio)
    has_target = any(t is not None for t in (min_figure, max_figure, min_ratio))
    met = (all(checks) and figure is not None) if has_target else None
    return Row(bench=bench, path=path, figure=figure, unit=unit, limit=limit, limit_label=limit_label,
               ratio=ratio, min_figure=min_figure, max_figure=max_figure, min_ratio=min_ratio,
               target=describe_target(min_figure, max_figure, min_ratio, unit), met=met, **extra)


class Report:
    """The rows one benchmark script measured."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def row(self, path: str, **kwargs: Any) -> Row:
        row = make_row(self.bench, path, **kwargs)
        self.rows.append(row)
        print(f"  ROW {format_row(row)}", flush=True)
        return row

    def failed(self, path: str, unit: str, error: str, **kwargs: Any) -> Row:
        """A row whose measurement raised: it shows as failed rather than vanishing."""
        print(f"  FAILED {path}:\n{error[-3000:]}", flush=True)
        return self.row(path, figure=None, unit=unit, details={"error": error[-2000:]}, **kwargs)

    def note(self, text: str) -> None:
        """A line printed under the table (e.g. which sizes ran, what was skipped)."""
        self.notes.append(text)
        print(f"  NOTE {text}", flush=True)

    def save(self) -> None:
        target = os.environ.get("SLUICE_BENCH_REPORT")
        if not target:
            return
        data = {"bench": self.bench, "rows": [asdict(r) for r in self.rows], "notes": self.notes}
        Path(target).write_text(json.dumps(data, indent=2, default=str))


def _cells(r: Row) -> list[str]:
    fig = "FAILED" if r.figure is None else f"{_num(r.figure)} {r.unit}"
    lim = f"{_num(r.limit)} ({r.limit_label})" if r.limit is not None else "—"
    ratio = f"{r.ratio:.2f}" if r.ratio is not None else "—"
    met = {True: "yes", False: "NO", None: "—"}[r.met]
    label = r.path + (f" [{r.backend}]" if r.backend != "postgresql" else "")
    label += f" ({r.workers} workers)" if r.workers != 1 else ""
    return [label, fig, lim, ratio, r.target or "—", met]


def format_row(r: Row) -> str:
    return " | ".join(_cells(r))


COLUMNS = ("path", "figure", "limit, same run", "ratio", "target", "met?")


def table_lines(rows: list[Row]) -> list[str]:
    """The rows as an aligned text table (also valid Markdown)."""
    cells = [list(COLUMNS)]
    cells += [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]

    def line(c: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(cells[0]), sep, *(line(c) for c in cells[1:])]
