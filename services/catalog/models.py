"""Tables of the catalog service.

``products`` is both the lifecycle record and the search projection: the
filterable and sortable fields of the product's latest published version (or of
its first draft before anything is published) are real, indexed columns, so
search at 100k products never has to open JSON. The full content lives in
``product_versions`` (frozen, immutable) and in ``products.draft`` (the one
editable working copy).

Full-text search is dialect specific and not declared here: PostgreSQL has a
generated ``search_vector`` tsvector column with a GIN index (and ``title_vector``
over title and tags for the first relevance tier), SQLite an FTS5
table ``products_fts`` kept in step by triggers (see migration 0002).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.catalog.statuses import ProductStatus
from shared.db import UTCDateTime, make_metadata, utcnow
from shared.outbox_model import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata()


# An integer surrogate key gives SQLite FTS5 a stable rowid to index by.
BigIntPk = BigInteger().with_variant(Integer(), "sqlite")


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("provider_org", "slug", name="uq_products_provider_slug"),
        Index("ix_products_status_listed", "status", "listed_at", "pk"),
        # Covers the facet query (index-only scan) and category filters.
        Index("ix_products_facets", "status", "category", "grade", "currency", "has_free", "has_one_time",
              "has_subscription", "has_metered"),
        Index("ix_products_status_grade", "status", "grade"),
        Index("ix_products_status_price", "status", "currency", "min_price", "pk"),
        Index("ix_products_provider", "provider_org", "status"),
        Index("ix_products_review", "draft_status", "submitted_at"),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    provider_org: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(64))
    # draft | in_review | listed | suspended | retired (the product as a whole)
    status: Mapped[str] = mapped_column(String(16), default=ProductStatus.DRAFT)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    # The working copy: null when there is none; draft_status editing | in_review
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    draft_version: Mapped[int | None] = mapped_column(Integer, default=None)
    draft_status: Mapped[str | None] = mapped_column(String(16), default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    submitted_by: Mapped[str | None] = mapped_column(String(64), default=None)
    # Last lifecycle decision shown to the provider (rejection reason, suspension reason, ...)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # L3: the product's privacy budget as its data service last reported it (a labelled
    # copy with its as-of time; the data service's ledger is the source of truth).
    privacy_budget: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    # --- search projection -------------------------------------------------------
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tags_text: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64))
    grade: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    min_price: Mapped[int | None] = mapped_column(BigInteger, default=None)
    has_free: Mapped[bool] = mapped_column(Boolean, default=False)
    has_one_time: Mapped[bool] = mapped_column(Boolean, default=False)
    has_subscription: Mapped[bool] = mapped_column(Boolean, default=False)
    has_metered: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ProductTag(Base):
    """Tags of the search projection, one row per tag, for exact tag filters."""

    __tablename__ = "product_tags"
    __table_args__ = (Index("ix_product_tags_tag", "tag", "product_pk"),)

    product_pk: Mapped[int] = mapped_column(
        BigIntPk, ForeignKey("products.pk", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)


class ProductVersion(Base):
    """A frozen, immutable published version: nothing ever updates these rows."""

    __tablename__ = "product_versions"

    product_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    grade: Mapped[str] = mapped_column(String(16))
    # The full spec (metadata, schema, delivery, policy, rights, plans) as submitted.
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    guardrails: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64), default=None)
    approval_note: Mapped[str | None] = mapped_column(Text, default=None)
    # The version's members of its public view as JSON, rendered once at publication
    # (services/catalog/published.py); null for versions published before migration 0004.
    public_doc: Mapped[str | None] = mapped_column(Text, default=None)


class ListedFacetCount(Base):
    """Listed products per combination of the facet columns, kept exact by triggers
    (migration 0005): totals and facets of filter-only searches without counting products."""

    __tablename__ = "listed_facet_counts"

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    grade: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)  # '' for no currency
    has_free: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    has_one_time: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    has_subscription: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    has_metered: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class WordFacetCount(Base):
    """Per search word (PostgreSQL lexeme), the total and facet counts of the listed products
    containing it, kept exact by a trigger (migration 0006; empty on SQLite)."""

    __tablename__ = "word_facet_counts"

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    facet: Mapped[str] = mapped_column(String(16), primary_key=True)  # total | category | grade | plan_kind
    value: Mapped[str] = mapped_column(String(64), primary_key=True)  # '' for the total
    n: Mapped[int] = mapped_column(BigInteger)


class ListedTitleWord(Base):
    """Per title/tag word (PostgreSQL lexeme), the listed products with it in their title or
    tags, keyed newest first, kept exact by a trigger (migration 0010; empty on SQLite): the
    ranking window of a one-word search is the first entries of one key range."""

    __tablename__ = "listed_title_words"

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    listed_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # 'infinity' for none
    pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class ListedProductTag(Base):
    """Per tag, the listed products with it and the columns a tag search filters, sorts and
    counts by, kept exact by triggers on ``products`` and ``product_tags`` (migration 0011;
    empty on SQLite): a tag search's price page and facets come from one narrow index range
    instead of a 1.6 KB ``products`` row per tagged product."""

    __tablename__ = "listed_product_tags"

    pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)
    currency: Mapped[str | None] = mapped_column(String(3))
    min_price: Mapped[int | None] = mapped_column(BigInteger)
    category: Mapped[str] = mapped_column(String(64))
    grade: Mapped[str] = mapped_column(String(16))
    has_free: Mapped[bool] = mapped_column(Boolean)
    has_one_time: Mapped[bool] = mapped_column(Boolean)
    has_subscription: Mapped[bool] = mapped_column(Boolean)
    has_metered: Mapped[bool] = mapped_column(Boolean)


class ListedSearch(Base):
    """Per listed product, the columns a several-word search matches, orders and counts by,
    kept exact by a trigger on ``products`` (migration 0012; empty on SQLite). On PostgreSQL
    it also has ``search_vector`` and ``title_vector`` (copies of the products' columns, out
    of line, GIN-indexed), so a match costs a ~100 B row instead of a 1.6 KB one."""

    __tablename__ = "listed_search"

    pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    category: Mapped[str] = mapped_column(String(64))
    grade: Mapped[str] = mapped_column(String(16))
    has_free: Mapped[bool] = mapped_column(Boolean)
    has_one_time: Mapped[bool] = mapped_column(Boolean)
    has_subscription: Mapped[bool] = mapped_column(Boolean)
    has_metered: Mapped[bool] = mapped_column(Boolean)


outbox = outbox_table(Base.metadata)
