"""products, versions, tags and full-text search

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Weights: title A, tags and summary B, description C (PostgreSQL); bm25 weights on SQLite.
PG_SEARCH_VECTOR = """
ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(tags_text, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(summary, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(description, '')), 'C')
) STORED
"""

# All query words in the title or tags: the first relevance tier (see services/catalog/search.py).
PG_TITLE_VECTOR = """
ALTER TABLE products ADD COLUMN title_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(tags_text, '')), 'B')
) STORED
"""

SQLITE_FTS = [
    """CREATE VIRTUAL TABLE products_fts USING fts5(
        title, tags_text, summary, description,
        content='products', content_rowid='pk', tokenize='porter unicode61')""",
    """CREATE TRIGGER products_fts_ai AFTER INSERT ON products BEGIN
        INSERT INTO products_fts(rowid, title, tags_text, summary, description)
        VALUES (new.pk, new.title, new.tags_text, new.summary, new.description);
    END""",
    """CREATE TRIGGER products_fts_ad AFTER DELETE ON products BEGIN
        INSERT INTO products_fts(products_fts, rowid, title, tags_text, summary, description)
        VALUES ('delete', old.pk, old.title, old.tags_text, old.summary, old.description);
    END""",
    # Only when an indexed column changes: lifecycle updates leave the index alone.
    """CREATE TRIGGER products_fts_au AFTER UPDATE OF title, tags_text, summary, description
    ON products BEGIN
        INSERT INTO products_fts(products_fts, rowid, title, tags_text, summary, description)
        VALUES ('delete', old.pk, old.title, old.tags_text, old.summary, old.description);
        INSERT INTO products_fts(rowid, title, tags_text, summary, description)
        VALUES (new.pk, new.title, new.tags_text, new.summary, new.description);
    END""",
]


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("pk", BigIntPk, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=True),
        sa.Column("draft_version", sa.Integer(), nullable=True),
        sa.Column("draft_status", sa.String(16), nullable=True),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("submitted_by", sa.String(64), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags_text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("min_price", sa.BigInteger(), nullable=True),
        sa.Column("has_free", sa.Boolean(), nullable=False),
        sa.Column("has_one_time", sa.Boolean(), nullable=False),
        sa.Column("has_subscription", sa.Boolean(), nullable=False),
        sa.Column("has_metered", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("listed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_products"),
        sa.UniqueConstraint("id", name="uq_products_id"),
        sa.UniqueConstraint("provider_org", "slug", name="uq_products_provider_slug"),
    )
    op.create_index("ix_products_status_listed", "products", ["status", "listed_at", "pk"])
    op.create_index("ix_products_facets", "products", ["status", "category", "grade", "currency", "has_free",
                                                       "has_one_time", "has_subscription", "has_metered"])
    op.create_index("ix_products_status_grade", "products", ["status", "grade"])
    op.create_index("ix_products_status_price", "products", ["status", "currency", "min_price", "pk"])
    op.create_index("ix_products_provider", "products", ["provider_org", "status"])
    op.create_index("ix_products_review", "products", ["draft_status", "submitted_at"])

    op.create_table(
        "product_tags",
        sa.Column("product_pk", BigIntPk, nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["product_pk"], ["products.pk"], ondelete="CASCADE",
                                name="fk_product_tags_product_pk_products"),
        sa.PrimaryKeyConstraint("product_pk", "tag", name="pk_product_tags"),
    )
    op.create_index("ix_product_tags_tag", "product_tags", ["tag", "product_pk"])

    op.create_table(
        "product_versions",
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("published_by", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("approval_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="CASCADE",
                                name="fk_product_versions_product_id_products"),
        sa.PrimaryKeyConstraint("product_id", "version", name="pk_product_versions"),
    )

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_SEARCH_VECTOR)
        op.execute("CREATE INDEX ix_products_search ON products USING GIN (search_vector)")
        op.execute(PG_TITLE_VECTOR)
        op.execute("CREATE INDEX ix_products_title_search ON products USING GIN (title_vector)")
    elif dialect == "sqlite":
        for stmt in SQLITE_FTS:
            op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("products_fts_ai", "products_fts_ad", "products_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS products_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_products_title_search")
        op.execute("DROP INDEX IF EXISTS ix_products_search")
    op.drop_table("product_versions")
    op.drop_index("ix_product_tags_tag", table_name="product_tags")
    op.drop_table("product_tags")
    for name in ("ix_products_review", "ix_products_provider", "ix_products_status_price",
                 "ix_products_status_grade", "ix_products_facets",
                 "ix_products_status_listed"):
        op.drop_index(name, table_name="products")
    op.drop_table("products")
