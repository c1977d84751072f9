"""The ``outbox`` table every producing service has in its own database.

Rows are written in the same transaction as the change they describe, and a
relay delivers them (see :mod:`shared.outbox`).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from shared.db import UTCDateTime


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        # What the row is: "audit_event", or a command such as "grant_entitlement".
        Column("kind", String(64), nullable=False),
        # Which service it goes to ("audit", "access", ...).
        Column("destination", String(32), nullable=False),
        # Idempotency key the receiver deduplicates on (event id, order id...).
        Column("message_id", String(64), nullable=False, unique=True),
        Column("payload", JSON, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("available_at", UTCDateTime, nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Column("delivered_at", UTCDateTime),
        # W3C trace headers ({"traceparent": ...}) of the span that wrote the row, so its
        # delivery continues that trace (shared.tracing); null when tracing is off.
        Column("trace_context", JSON(none_as_null=True)),
        # When a receiver refused the message for good (4xx other than 401/408/409/429): the
        # relay stops sending it; operators see it at GET /v1/outbox/dead-letters and /metrics.
        Column("dead_at", UTCDateTime),
        Index("ix_outbox_pending", "destination", "delivered_at", "available_at"),
    )
