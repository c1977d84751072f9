"""The audit event contract (DESIGN §6), shared by producers, the audit
service and the standalone verifier."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Outcome = Literal["success", "failure", "denied"]
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sub: str | None = Field(default=None, description="Client id (token subject) that acted.")
    org: str | None = Field(default=None, description="Organisation id of the actor.")
    role: str | None = Field(default=None, description="Role the actor acted in.")


class Subject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=64, examples=["organisation"])
    id: str = Field(min_length=1, max_length=200, examples=["org_4f1c2a9d0b7e6c5a3f21"])


class AuditEvent(BaseModel):
    """One thing that happened, as its producer saw it."""

    model_config = ConfigDict(extra="forbid")
    event_id: uuid.UUID = Field(description="Chosen by the producer; the idempotency key.")
    occurred_at: datetime = Field(description="When it happened (UTC, RFC 3339).")
    service: str = Field(min_length=1, max_length=32, examples=["access"])
    action: str = Field(pattern=ACTION_PATTERN, max_length=128, examples=["access.client.created"])
    actor: Actor
    subject: Subject
    outcome: Outcome = "success"
    request_id: str | None = Field(default=None, max_length=128)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone (UTC)")
        return v.astimezone(UTC)


class StoredEvent(AuditEvent):
    """An event as the audit log stores it: with its leaf index and arrival time."""

    seq: int = Field(ge=0, description="Leaf index in the Merkle tree (gap-free, from 0).")
    received_at: datetime


def new_event(
    *,
    service: str,
    action: str,
    subject_type: str,
    subject_id: str,
    actor: Actor | None = None,
    outcome: Outcome = "success",
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        service=service,
        action=action,
        actor=actor or Actor(),
        subject=Subject(type=subject_type, id=subject_id),
        outcome=outcome,
        request_id=request_id,
        details=details or {},
    )
