"""Cursor pagination: ``?limit=&cursor=`` → ``{"items": [...], "next_cursor": ...}``.

Cursors are opaque, URL-safe base64 of a small JSON object holding the keyset
position (for example the last item's sort key and id).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from shared.errors import BadRequest

T = TypeVar("T")

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


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "The cursor is not valid. Pass back the `next_cursor` of a previous page unchanged.",
            problem="invalid-cursor",
            title="Invalid cursor",
        ) from exc
    if not isinstance(value, dict):
        raise BadRequest(
            "The cursor is not valid. Pass back the `next_cursor` of a previous page unchanged.",
            problem="invalid-cursor",
            title="Invalid cursor",
        )
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
