"""Tables of the dataservice service (its own database, not the provider's data)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Table, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase

from shared.db import UTCDateTime, make_metadata
from shared.outbox_model import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata()


outbox = outbox_table(Base.metadata)

#: Per-entitlement counters, changed only by one conditional UPDATE each, so that
#: concurrent queries can never spend more than the quota or the privacy budget.
entitlement_usage = Table(
    "entitlement_usage",
    Base.metadata,
    Column("entitlement_id", String(64), primary_key=True),
    Column("product_id", String(64), nullable=False),
    Column("queries_used", Integer, nullable=False, server_default="0"),
    # Epsilon in millionths: integer arithmetic never overspends by rounding.
    Column("epsilon_used_micro", BigInteger, nullable=False, server_default="0"),
    Column("rows_returned", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Filtered aggregate queries each entitlement ran, for differencing checks.
query_history = Table(
    "query_history",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("entitlement_id", String(64), nullable=False),
    Column("product_id", String(64), nullable=False),
    Column("where_fingerprint", String(64), nullable=False),
    Column("filters", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("entitlement_id", "product_id", "where_fingerprint",
                     name="uq_query_history_entitlement_id"),
    Index("ix_query_history_recent", "entitlement_id", "product_id", "id"),
)
