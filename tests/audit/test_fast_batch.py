"""The msgspec fast path for append bodies accepts only what pydantic accepts, with equal results.

services/audit/fast_batch.py may decline any body (the pydantic path then decides, so error
bodies are unchanged), but a body it accepts must give exactly the prepared events (canonical
pieces and column values) the pydantic path gives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.audit import fast_batch
from services.audit.log import prepare
from services.audit.routers.ingest import _BATCH
from shared.errors import RuleViolation

EVENT = {
    "event_id": "0b8a6a38-8f7e-4d1e-9a3c-6f1d0c2b9e41",
    "occurred_at": "2026-11-28T09:30:00Z",
    "service": "orders",
    "action": "orders.order.paid",
    "actor": {"sub": "cli_1", "org": "org_1", "role": "buyer"},
    "subject": {"type": "order", "id": "ord_7c1e"},
    "outcome": "success",
    "request_id": "5f0c1d7e9a2b4c3d",
    "details": {"amount": 4900, "currency": "EUR"},
}


def pydantic_path(raw: bytes) -> list[Any] | None:
    try:
        return prepare(_BATCH.validate_json(raw).events)
    except (ValidationError, RuleViolation):
        return None


def assert_same(raw: bytes) -> bool:
    """True when the fast path accepted ``raw`` (and then matched pydantic exactly)."""
    fast = fast_batch.decode(raw)
    if fast is None:
        return False
    slow = pydantic_path(raw)
    assert slow is not None, f"fast path accepted what pydantic refuses: {raw!r}"
    assert fast == slow
    return True


def test_a_typical_batch_takes_the_fast_path_with_pydantics_result() -> None:
    events = [dict(EVENT, event_id=f"0b8a6a38-8f7e-4d1e-9a3c-6f1d0c2b9e{i:02d}") for i in range(50)]
    assert assert_same(json.dumps({"events": events}).encode())
    minimal = {k: EVENT[k] for k in ("event_id", "occurred_at", "service", "action", "subject")}
    assert assert_same(json.dumps({"events": [dict(minimal, actor={})], "extra": 1}).encode())


@pytest.mark.parametrize("occurred_at", [
    "2026-11-28T09:30:00Z", "2026-11-28T09:30:00.000000Z", "2026-11-28T09:30:00.001000Z",
    "2026-11-28T09:30:00.5Z", "2026-11-28T09:30:00.123456+05:30", "2026-11-28T23:59:59-23:59",
    "2026-11-28T09:30:00+00:00",
])
def test_times_in_every_accepted_form_match_pydantic(occurred_at: str) -> None:
    assert assert_same(json.dumps({"events": [dict(EVENT, occurred_at=occurred_at)]}).encode())


@pytest.mark.parametrize("change", [
    {"event_id": "0B8A6A38-8F7E-4D1E-9A3C-6F1D0C2B9E41"},  # pydantic normalises: declined here
    {"event_id": "0b8a6a388f7e4d1e9a3c6f1d0c2b9e41"},
    {"event_id": "not-a-uuid"},
    {"occurred_at": "2026-11-28T09:30:00"},  # naive: pydantic refuses
    {"occurred_at": "2026-11-28 09:30:00Z"},
    {"occurred_at": "2026-11-28T09:30:00.1234567Z"},
    {"occurred_at": "2026-02-30T09:30:00Z"},
    {"occurred_at": "2026-11-28T24:00:00Z"},
    {"occurred_at": "2026-11-28T09:30:00+05:60"},
    {"occurred_at": "0001-01-01T00:00:00+01:00"},
    {"occurred_at": 1764322200},
    {"action": "orders.paid\n"},
    {"action": "Orders.paid"},
    {"action": "orders"},
    {"service": ""},
    {"service": "s" * 33},
    {"request_id": "r" * 129},
    {"outcome": "maybe"},
    {"details": {"price": 1.5}},
    {"details": {"big": 2**60}},
    {"details": {"k\u00e9y": 1}},
    {"details": {"nul": "a\u0000b"}},
    {"subject": {"type": "order", "id": "x", "more": 1}},
    {"actor": {"sub": 5}},
    {"surplus": True},
])
def test_the_fast_path_declines_what_it_cannot_match(change: dict[str, Any]) -> None:
    raw = json.dumps({"events": [dict(EVENT, **change)]}).encode()
    assert fast_batch.decode(raw) is None


@pytest.mark.parametrize("raw", [b"", b"{", b'{"events": []}', b'{"events": null}', b"[]",
                                 b'{"events": [{}]}', b'{"events": [1]}'])
def test_malformed_bodies_are_left_to_pydantic(raw: bytes) -> None:
    assert fast_batch.decode(raw) is None


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), _text,
                       st.floats(allow_nan=False, allow_infinity=False))
_details = st.recursive(st.dictionaries(_text, _json_leaf, max_size=3),
                        lambda inner: st.dictionaries(_text, st.one_of(_json_leaf, inner, st.lists(inner, max_size=2)),
                                                      max_size=3), max_leaves=8)
_times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?(Z|[+-]\d\d:\d\d)?\Z"),
)
_event = st.fixed_dictionaries({
    "event_id": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), _text),
    "occurred_at": _times,
    "service": st.one_of(st.just("orders"), _text),
    "action": st.one_of(st.from_regex(r"\A[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\n?\Z"), _text),
    "actor": st.fixed_dictionaries({}, optional={"sub": st.one_of(st.none(), _text),
                                                 "org": st.one_of(st.none(), _text),
                                                 "role": st.one_of(st.none(), _text)}),
    "subject": st.fixed_dictionaries({"type": _text, "id": _text}),
}, optional={
    "outcome": st.sampled_from(["success", "failure", "denied", "other"]),
    "request_id": st.one_of(st.none(), st.text(max_size=130)),
    "details": _details,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(_event, min_size=1, max_size=3), ascii_only=st.booleans())
def test_whatever_the_fast_path_accepts_pydantic_accepts_identically(
    events: list[dict[str, Any]], ascii_only: bool
) -> None:
    assert_same(json.dumps({"events": events}, ensure_ascii=ascii_only).encode())
