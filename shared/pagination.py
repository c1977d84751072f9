"""Cursor pagination: ``?limit=&cursor=`` → ``{"items": [...], "next_cursor": ...}``.

Cursors are opaque, URL-safe base64 of a small JSON object holding the keyset
position (for example the last item's sort key and id).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from shared.errors import BadRequest

T = TypeVar("T")
P = TypeVar("P")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: What a cursor this service did not give is told (docs/problems.md: ``invalid-cursor``).
INVALID_CURSOR_DETAIL = (
    "The cursor is not valid. Pass back the `next_cursor` of a previous page unchanged."
)


def invalid_cursor(detail: str = INVALID_CURSOR_DETAIL) -> BadRequest:
    """The one problem for a cursor (or feed position) this service did not give; every list
    raises this, so the type, title and status cannot drift apart between services."""
    return BadRequest(detail, problem="invalid-cursor", title="Invalid cursor")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise invalid_cursor() from exc
    if not isinstance(value, dict):
        raise invalid_cursor()
    return value


def read_cursor(
    cursor: str | None, parse: Callable[[dict[str, Any]], P], detail: str = INVALID_CURSOR_DETAIL
) -> P | None:
    """The keyset position in ``cursor`` (None without one), read by ``parse``; a position that
    ``parse`` cannot read (a missing key, a wrong type: KeyError, TypeError, ValueError) is the
    :func:`invalid_cursor` problem, so a forged cursor is a 400, never a 500 or a first page."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        return parse(position)
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid_cursor(detail) from exc


def exact_int(value: object) -> int:
    """``value`` if it is an int as our cursors write it (not a float, text or bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {value!r}")
    return value


LimitParam = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (1–{MAX_LIMIT}).")
]
CursorParam = Annotated[
    str | None, Query(description="Opaque cursor from the previous page's `next_cursor`.")
]


def page_of(
    rows: list[T], limit: int, position_of: Any
) -> tuple[list[T], str | None]:
    """Given up to ``limit + 1`` rows, return the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(position_of(rows[-1]))
    return rows, None
