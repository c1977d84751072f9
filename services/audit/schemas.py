"""Request and response bodies of the audit API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.events import AuditEvent, StoredEvent
from shared.pagination import Page

_HASH = "base64 of a 32-byte SHA-256 hash"
_EXAMPLE_HASH = "3q2+7wA9Yz7d1iQm0GZk8V5cQnXxY1u9aC7oE0p3c8w="


class EventBatch(BaseModel):
    events: list[AuditEvent] = Field(
        min_length=1,
        description="Events to append, idempotent by `event_id`.",
        examples=[[{
            "event_id": "0b8a6a38-8f7e-4d1e-9a3c-6f1d0c2b9e41",
            "occurred_at": "2026-11-28T09:30:00Z",
            "service": "orders",
            "action": "orders.order.paid",
            "actor": {"sub": "cli_2b9e41c07d5a88f3e6a1", "org": "org_4f1c2a9d0b7e6c5a3f21", "role": "buyer"},
            "subject": {"type": "order", "id": "ord_7c1e"},
            "outcome": "success",
            "request_id": "5f0c1d7e9a2b4c3d",
            "details": {"amount": 4900, "currency": "EUR"},
        }]],
    )


class AppendedEvent(BaseModel):
    event_id: str = Field(examples=["0b8a6a38-8f7e-4d1e-9a3c-6f1d0c2b9e41"])
    seq: int = Field(description="Leaf index of the event in the log.", examples=[1041])
    duplicate: bool = Field(
        description="True when the event was already in the log (nothing new was appended).",
        examples=[False],
    )


class AppendResponse(BaseModel):
    results: list[AppendedEvent] = Field(description="One entry per submitted event, in order.")


class InclusionProof(BaseModel):
    leaf_index: int = Field(examples=[1041])
    tree_size: int = Field(examples=[5000])
    hashes: list[str] = Field(
        description=f"RFC 9162 audit path, leaf side first; each {_HASH}.", examples=[[_EXAMPLE_HASH]]
    )


class ConsistencyProof(BaseModel):
    first: int = Field(examples=[4000])
    second: int = Field(examples=[5000])
    hashes: list[str] = Field(
        description=f"RFC 9162 consistency path; each {_HASH}.", examples=[[_EXAMPLE_HASH]]
    )


class CheckpointOut(BaseModel):
    tree_size: int = Field(examples=[5000])
    root_hash: str = Field(description=_HASH, examples=[_EXAMPLE_HASH])
    key_id: str = Field(description="4-byte key id of the signing key, hex.", examples=["8f3a10c2"])
    created_at: datetime
    note: str = Field(
        description="The checkpoint as a C2SP signed note: origin, size and base64 root lines, "
        "a blank line, then an Ed25519 signature line `— <key name> <base64(key id ‖ signature)>`.",
        examples=["sluice.dev/audit-log\n5000\n" + _EXAMPLE_HASH + "\n\n— sluice.dev/audit-log AAAA...\n"],
    )


class PublicKey(BaseModel):
    origin: str = Field(
        description="Origin line every checkpoint carries.", examples=["sluice.dev/audit-log"]
    )
    key_name: str = Field(examples=["sluice.dev/audit-log"])
    key_id: str = Field(description="4-byte key id, hex.", examples=["8f3a10c2"])
    algorithm: str = Field(examples=["ed25519"])
    verifier_key: str = Field(
        description="Signed-note verifier key `<name>+<key id hex>+<base64(0x01 ‖ public key)>`; "
        "pin it in the verifier with `--public-key`.",
        examples=["sluice.dev/audit-log+8f3a10c2+AXdTS3Vq..."],
    )


class EventWithProof(BaseModel):
    event: StoredEvent
    leaf_hash: str = Field(description=f"SHA-256(0x00 ‖ RFC 8785 JSON of `event`), {_HASH}.")
    checkpoint: CheckpointOut | None = Field(
        description="The latest checkpoint; null before the first one is signed."
    )
    inclusion_proof: InclusionProof | None = Field(
        description="Proof against `checkpoint`; null while the event is newer than the latest "
        "checkpoint (retry after a few seconds)."
    )


class ActionCount(BaseModel):
    action: str = Field(examples=["orders.order.paid"])
    count: int = Field(examples=[42])


class DayCount(BaseModel):
    day: str = Field(description="UTC day of `occurred_at`.", examples=["2026-11-28"])
    count: int = Field(examples=[420])


class Stats(BaseModel):
    total: int = Field(examples=[5000])
    by_action: list[ActionCount]
    by_day: list[DayCount]


class EventPage(Page[StoredEvent]):
    """A page of a listing that is bounded by the log's size when its first page was read."""

    tree_size: int = Field(description="The listing covers events with `seq` below this: the log's "
                           "size when the first page was read (the cursor carries it). Events "
                           "appended later, including the records of this listing's own reads, "
                           "appear in a new listing, so paging always ends.")
