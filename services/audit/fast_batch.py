"""A fast path for ``POST /v1/events`` bodies: msgspec instead of pydantic, when it is safe.

Why: validating a 100-event batch with pydantic (one ``TypeAdapter.validate_json`` over the raw
bytes) and dumping each model back to JSON for its canonical form were ~45 % of the audit
server's CPU per event (docs/performance.md). msgspec decodes the same bytes into plain structs
several times faster, and the canonical pieces are then built from those values directly.

The contract stays pydantic's (``shared.events.AuditEvent``): this path only ever *accepts*
a body that pydantic accepts with the same values, and gives up (``None``) on anything else,
so the caller then runs the pydantic path, which produces every error body exactly as before.
To keep "accepted here" a subset of "accepted by pydantic with equal values", it declines:

* any ``\\u`` escape in the body (non-ASCII text, NUL, surrogates: pydantic's parser decides);
* an ``event_id`` not in canonical lower-case hyphenated form (pydantic normalises the others);
* an ``occurred_at`` that is not ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`` (pydantic accepts
  more forms and rounds more digits; this form parses to the same instant both ways);
* ``details`` that are not plain JSON (:func:`is_plain_json`: no floats, safe integers), so the
  canonical form is sorted-key orjson output and needs no RFC 8785 fallback or refusal;
* anything msgspec itself refuses (wrong types, unknown fields, lengths it counts differently).

Tests compare both paths' results on generated batches (tests/audit/test_fast_batch.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from services.audit.log import PreparedEvent, split_canonical
from services.audit.verifylib import is_plain_json
from shared.events import ACTION_PATTERN

_Str32 = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
_Str64 = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Str128 = Annotated[str, msgspec.Meta(max_length=128)]
_Str200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class _Actor(msgspec.Struct, forbid_unknown_fields=True):
    sub: str | None = None
    org: str | None = None
    role: str | None = None


class _Subject(msgspec.Struct, forbid_unknown_fields=True):
    type: _Str64
    id: _Str200


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    event_id: str
    occurred_at: str
    service: _Str32
    action: _Str128
    actor: _Actor
    subject: _Subject
    outcome: Literal["success", "failure", "denied"] = "success"
    request_id: _Str128 | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class _Batch(msgspec.Struct):  # EventBatch ignores unknown top-level members
    events: Annotated[list[_Event], msgspec.Meta(min_length=1)]


_DECODER = msgspec.json.Decoder(_Batch)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(
    r"\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
# fullmatch, not re.match with ^...$ (Python's $ also matches before a final newline).
_ACTION = re.compile(ACTION_PATTERN.removeprefix("^").removesuffix("$"))


def _json_time(text: str, t: datetime) -> str:
    """pydantic's JSON form of the UTC datetime ``t`` parsed from ``text``: "Z", and six
    digits of microseconds only when they are not zero (the producer's text when it is
    already in that form, which is the common case)."""
    if text[-1] == "Z" and (len(text) == 20 or (len(text) == 27 and not text.endswith(".000000Z"))):
        return text
    return t.replace(tzinfo=None).isoformat() + "Z"


def decode(raw: bytes) -> list[PreparedEvent] | None:
    """The batch's events prepared for the writer, or ``None``: use the pydantic path."""
    if b"\\u" in raw:
        return None
    try:
        batch = _DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    out: list[PreparedEvent] = []
    for ev in batch.events:
        if (_UUID.fullmatch(ev.event_id) is None or _TIME.fullmatch(ev.occurred_at) is None
                or _ACTION.fullmatch(ev.action) is None or not is_plain_json(ev.details)):
            return None
        try:
            occurred = datetime.fromisoformat(ev.occurred_at).astimezone(UTC)
        except (ValueError, OverflowError):  # e.g. day 31 of a 30-day month: pydantic's answer counts
            return None
        actor, subject = ev.actor, ev.subject
        dump = {
            "event_id": ev.event_id, "occurred_at": _json_time(ev.occurred_at, occurred),
            "service": ev.service, "action": ev.action,
            "actor": {"sub": actor.sub, "org": actor.org, "role": actor.role},
            "subject": {"type": subject.type, "id": subject.id}, "outcome": ev.outcome,
            "request_id": ev.request_id, "details": ev.details,
        }
        whole = orjson.dumps(dump, option=orjson.OPT_SORT_KEYS)
        columns = (ev.event_id, occurred, ev.service, ev.action, actor.sub, actor.org, actor.role,
                   subject.type, subject.id, ev.outcome, ev.request_id, orjson.dumps(ev.details).decode())
        out.append(split_canonical(whole, columns))
    return out
