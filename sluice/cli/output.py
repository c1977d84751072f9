"""How the CLI prints answers: Rich tables for people, JSON/YAML and ``--field`` for scripts.

Tables never cut a value: ids keep their full width where the terminal allows,
everything else folds onto more lines. ``--field NAME`` prints raw values only
(one line per item, several fields tab-separated), so
``T=$(sluice tokens issue ent_... --field access_token)`` captures exactly the token.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "yaml")
#: Members of a page that are plumbing, not content.
PAGING_KEYS = ("items", "next_cursor", "has_more")
_ID = re.compile(r"^[a-z]{2,5}_[A-Za-z0-9_-]+$")
_STATUS_STYLE = {
    "active": "green", "listed": "green", "fulfilled": "green", "paid": "green", "success": "green",
    "ok": "green", "published": "green",
    "pending_payment": "yellow", "in_review": "yellow", "draft": "yellow", "suspended": "yellow",
    "retiring": "yellow", "denied": "yellow",
    "payment_failed": "red", "revoked": "red", "refunded": "red", "retired": "red", "failure": "red",
    "cancelled": "red", "expired": "red",
}


class FieldMissing(Exception):
    """``--field`` named something the answer does not have."""


def stdout_console() -> Console:
    return Console(soft_wrap=False, highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


# --- scripts: JSON, YAML, raw fields ------------------------------------------------------

def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def to_yaml(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))


def pick(data: Any, path: str) -> Any:
    """``price.total`` out of ``{"price": {"total": 4900}}``; ``KeyError`` when absent."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def raw(value: Any) -> str:
    """A value as a script wants it: strings bare, ``null`` empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def field_lines(data: Any, fields: Sequence[str]) -> list[str]:
    """The ``--field`` values: from the answer itself, else from each of its items."""
    rows: list[Any]
    if isinstance(data, dict) and all(_has(data, f) for f in fields):
        rows = [data]
    elif isinstance(data, dict) and isinstance(data.get("items"), list):
        rows = data["items"]
    elif isinstance(data, list):
        rows = data
    else:
        rows = [data]
    lines = []
    for row in rows:
        try:
            lines.append("\t".join(raw(pick(row, f)) for f in fields))
        except KeyError as exc:
            available = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise FieldMissing(f"no field {exc.args[0]!r} in the answer; it has: {available}") from None
    return lines


def _has(data: dict[str, Any], path: str) -> bool:
    try:
        pick(data, path)
    except KeyError:
        return False
    return True


# --- people: tables ------------------------------------------------------------------------

def cell(value: Any, depth: int = 0) -> RenderableType:
    """A value inside a table: nested objects become nested tables (two levels), never cut."""
    if isinstance(value, dict) and value and depth < 2:
        return key_values(value, depth + 1)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and depth < 2:
        return rows_table(value, depth=depth + 1)
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return Text(", ".join(raw(v) for v in value), overflow="fold")
    if isinstance(value, dict | list):
        return Text(raw(value), overflow="fold")
    if value is None:
        return Text("-", style="dim")
    text = raw(value)
    return Text(text, style=_STATUS_STYLE.get(text, ""), overflow="fold")


def key_values(data: dict[str, Any], depth: int = 0) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold" if depth == 0 else "dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in data.items():
        grid.add_row(key, cell(value, depth))
    return grid


def rows_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None,
               depth: int = 0, title: str | None = None, width: int = 0) -> Table:
    """One row per item; ``columns`` (dotted paths allowed) or every scalar member."""
    cols = list(columns) if columns else _scalar_columns(rows)
    table = Table(title=title, title_justify="left", show_edge=depth == 0, pad_edge=depth == 0,
                  header_style="bold", expand=False)
    keep_whole = _id_columns(rows, cols, width) if depth == 0 else {}
    for col in cols:
        table.add_column(col, overflow="fold", min_width=keep_whole.get(col))
    for row in rows:
        table.add_row(*(cell(_get(row, c), depth + 1) for c in cols))
    return table


def _id_columns(rows: list[dict[str, Any]], cols: list[str], width: int) -> dict[str, int]:
    """Columns of ids (``ord_…``, ``cli_…``) and their full width, when they all fit in
    ``width`` beside a few characters for every other column: ids copy best unfolded."""
    ids = {}
    for col in cols:
        values = [raw(_get(r, col)) for r in rows]
        if values and all(_ID.match(v) for v in values if v) and any(values):
            ids[col] = max(len(v) for v in values)
    needed = sum(ids.values()) + 8 * (len(cols) - len(ids)) + 3 * len(cols) + 1
    return ids if width and needed <= width else {}


def _get(row: dict[str, Any], path: str) -> Any:
    try:
        return pick(row, path)
    except KeyError:
        return None


def _scalar_columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in cols and not isinstance(value, dict | list):
                cols.append(key)
    return cols or [k for r in rows for k in r][:6]


def table_of(data: Any, columns: Sequence[str] | None = None, width: int = 0) -> list[RenderableType]:
    """What ``--output table`` prints for an answer (a page prints its items, then the rest;
    a query answer its rows under its column names)."""
    if isinstance(data, dict) and isinstance(data.get("rows"), list) \
            and isinstance(data.get("columns"), list):
        names = [str(c) for c in data["columns"]]
        rows = [dict(zip(names, r, strict=False)) for r in data["rows"] if isinstance(r, list)]
        rest = {k: v for k, v in data.items() if k not in ("rows", "columns")}
        shown = rows_table(rows, names, width=width) if rows else Text("(no rows)", style="dim")
        return [shown, key_values(rest)]
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        out: list[RenderableType] = []
        items = data["items"]
        out.append(rows_table(items, columns, width=width) if items else Text("(nothing)", style="dim"))
        rest = {k: v for k, v in data.items() if k not in PAGING_KEYS}
        if rest:
            out.append(key_values(rest))
        return out
    if isinstance(data, list):
        if not data:
            return [Text("(nothing)", style="dim")]
        if all(isinstance(r, dict) for r in data):
            return [rows_table(data, columns, width=width)]
        return [Text("\n".join(raw(v) for v in data))]
    if isinstance(data, dict):
        return [key_values(data)]
    return [Text(raw(data))]


def emit(data: Any, fmt: str, fields: Sequence[str] = (), columns: Sequence[str] | None = None) -> None:
    """Print an answer in the chosen format (``--field`` wins over ``--output``)."""
    if data is None:
        return
    if fields:
        for line in field_lines(data, fields):
            sys.stdout.write(line + "\n")
        return
    if fmt == "json":
        sys.stdout.write(to_json(data) + "\n")
        return
    if fmt == "yaml":
        sys.stdout.write(to_yaml(data))
        return
    console = stdout_console()
    for renderable in table_of(data, columns, console.width):
        console.print(renderable, crop=False)
    cursor = data.get("next_cursor") if isinstance(data, dict) else None
    if cursor and isinstance(data, dict) and data.get("items") is not None and data.get("has_more", True):
        stderr_console().print(f"[dim]more: add --cursor {cursor} (or --all for every page)[/dim]")
