"""Tables of the dataservice service (its own database, not the provider's data)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table
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

#: The product-wide privacy budget of each (mapped product, release period): every L3
#: answer in the period spends from it, whoever asks. Changed only by one conditional
#: UPDATE per answer, so concurrent answers never overspend.
privacy_budgets = Table(
    "privacy_budgets",
    Base.metadata,
    Column("product_id", String(64), primary_key=True),  # the mapping's product (the data set)
    Column("period", String(16), primary_key=True),  # e.g. 2026-11, 2026-Q4, 2026
    Column("epsilon_total_micro", BigInteger, nullable=False),
    Column("epsilon_spent_micro", BigInteger, nullable=False, server_default="0"),
    Column("delta_total_pico", BigInteger, nullable=False, server_default="0"),
    Column("delta_spent_pico", BigInteger, nullable=False, server_default="0"),
    Column("answers", BigInteger, nullable=False, server_default="0"),
    Column("renews_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Every charge to a privacy budget: the regulator's evidence of who spent what.
privacy_charges = Table(
    "privacy_charges",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("product_id", String(64), nullable=False),
    Column("period", String(16), nullable=False),
    Column("catalog_product_id", String(64), nullable=False),  # the token's product
    Column("entitlement_id", String(64), nullable=False),
    Column("organisation_id", String(64)),
    Column("subject", String(128), nullable=False),
    Column("jti", String(128), nullable=False),
    Column("epsilon_micro", BigInteger, nullable=False),
    Column("delta_pico", BigInteger, nullable=False),
    Column("usage_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_privacy_charges_product_period", "product_id", "period", "id"),
)

#: The contribution-bounded copy of each L3 product per release period (one table each).
dp_releases = Table(
    "dp_releases",
    Base.metadata,
    Column("product_id", String(64), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("table_name", String(63), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("built_at", UTCDateTime, nullable=False),
)
