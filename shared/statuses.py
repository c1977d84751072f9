"""Status machines as data: a transition table and the one function that applies it.

Each service names its statuses (a ``StrEnum``) and lists its transitions, ``(from, to) →
name``; :func:`move` is the last word on which changes exist, so no code path can put an
object in a state the rest of the service does not expect (orders, catalog products and
access entitlements use it or the same idea).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol, TypeVar

S = TypeVar("S", bound=StrEnum)


class HasStatus(Protocol):
    status: str


def move(obj: HasStatus, to: S, transitions: Mapping[tuple[S, S], str], what: str) -> str:
    """Set ``obj.status`` to ``to`` and return the transition's name; a change the table does
    not hold is a bug in the caller (which refuses impossible requests with a 409 first)."""
    frm = type(to)(obj.status)
    name = transitions.get((frm, to))
    if name is None:
        raise ValueError(f"{what} cannot go from {frm} to {to}")
    obj.status = to
    return name
