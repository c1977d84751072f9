"""Tables of the audit service.

``events``, ``tree_nodes``, ``checkpoints`` and ``log_keys`` are append-only:
no code path updates or deletes them, and the migrations install triggers that
reject UPDATE, DELETE, TRUNCATE and (SQLite) REPLACE (see docs/audit.md).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase

from shared.db import UTCDateTime, make_metadata
from shared.outbox_model import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata()


outbox = outbox_table(Base.metadata)

# One row per leaf: the stored event (StoredEvent fields, flattened) and its leaf hash.
events = Table(
    "events",
    Base.metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("service", String(32), nullable=False),
    Column("action", String(128), nullable=False),
    Column("actor_sub", Text),
    Column("actor_org", Text),
    Column("actor_role", Text),
    Column("subject_type", String(64), nullable=False),
    Column("subject_id", String(200), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("request_id", String(128)),
    Column("details", JSON, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Index("ix_events_action_seq", "action", "seq"),
    Index("ix_events_actor_org_seq", "actor_org", "seq"),
    Index("ix_events_actor_sub_seq", "actor_sub", "seq"),
    Index("ix_events_subject_seq", "subject_type", "subject_id", "seq"),
    Index("ix_events_occurred_at", "occurred_at"),
)

# Full-subtree hashes at stored levels 4, 8, 12, ... (see services/audit/merkle.py).
tree_nodes = Table(
    "tree_nodes",
    Base.metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Every signed checkpoint, one per tree size.
checkpoints = Table(
    "checkpoints",
    Base.metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("key_id", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Development signing keys generated on first start (production configures one).
log_keys = Table(
    "log_keys",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_name", String(200), nullable=False),
    Column("private_key", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Empty; see take_write_lock in services/audit/log.py.
writer_lock = Table("writer_lock", Base.metadata, Column("id", Integer, primary_key=True))

APPEND_ONLY_TABLES = ("events", "tree_nodes", "checkpoints", "log_keys")
