"""listed_product_tags: per tag, the listed products with it and their price and facet columns

A tag search (``tag=…``, often with a currency and price cap, sorted by price) visited one
1.6 KB-wide ``products`` row per tagged product twice: once to filter by price and sort, once
to count the facets (a common tag is on ~3 % of the catalog: ~30,000 heap pages at 1M
products). Here each (tag, listed product) is one narrow row carrying the columns those
filters, the price order and the facets need, indexed (tag, currency, min_price, pk) with the
facet columns included: the price page is the first entries of one index range and the facets
an index-only scan of it (services/catalog/search_tags.py).

Triggers on both tables keep it exact in the same transaction as every change: on
``products`` when a product's status or one of the copied columns changes (its rows are
rewritten from ``product_tags``), on ``product_tags`` when a tag row is added or removed
(copied from its product when that product is listed). Rows are per product, so no shared
counter is updated and no lock is needed. PostgreSQL only; on SQLite the table exists and
stays empty, and tag searches read ``products`` as before.

Revision ID: 0011_listed_product_tags
Revises: 0010_listed_title_words
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_listed_product_tags"
down_revision: str | None = "0010_listed_title_words"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The product columns copied (besides the tag and pk); a change to one of them rewrites the rows.
COPIED = ("currency", "min_price", "category", "grade", "has_free", "has_one_time",
          "has_subscription", "has_metered")
_COLS = ", ".join(COPIED)


def _from(row: str) -> str:
    return ", ".join(f"{row}.{c}" for c in COPIED)


# Built from the constant column list above; no input reaches these statements.
PG_FUNCTIONS = [
    f"""
CREATE FUNCTION listed_product_tags_from_products() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'listed' THEN
        DELETE FROM listed_product_tags WHERE pk = OLD.pk;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'listed' THEN
        INSERT INTO listed_product_tags (pk, tag, {_COLS})
        SELECT NEW.pk, t.tag, {_from("NEW")} FROM product_tags t WHERE t.product_pk = NEW.pk;
    END IF;
    RETURN NULL;
END
$$
""",  # noqa: S608
    f"""
CREATE FUNCTION listed_product_tags_from_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM listed_product_tags WHERE pk = OLD.product_pk AND tag = OLD.tag;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO listed_product_tags (pk, tag, {_COLS})
        SELECT p.pk, NEW.tag, {_from("p")} FROM products p WHERE p.pk = NEW.product_pk AND p.status = 'listed';
    END IF;
    RETURN NULL;
END
$$
""",  # noqa: S608
]
PG_TRIGGERS = [
    "CREATE TRIGGER listed_product_tags_ins_del AFTER INSERT OR DELETE ON products "
    "FOR EACH ROW EXECUTE FUNCTION listed_product_tags_from_products()",
    "CREATE TRIGGER listed_product_tags_upd AFTER UPDATE ON products FOR EACH ROW WHEN ("
    + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ("status", *COPIED))
    + ") EXECUTE FUNCTION listed_product_tags_from_products()",
    "CREATE TRIGGER listed_product_tags_tags AFTER INSERT OR UPDATE OR DELETE ON product_tags "
    "FOR EACH ROW EXECUTE FUNCTION listed_product_tags_from_tags()",
]
FILL = f"""
INSERT INTO listed_product_tags (pk, tag, {_COLS})
SELECT p.pk, t.tag, {_from("p")}
FROM product_tags t JOIN products p ON p.pk = t.product_pk
WHERE p.status = 'listed'
"""  # noqa: S608


def upgrade() -> None:
    op.create_table(
        "listed_product_tags",
        sa.Column("pk", sa.BigInteger(), nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("min_price", sa.BigInteger(), nullable=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        *(sa.Column(f"has_{k}", sa.Boolean(), nullable=False)
          for k in ("free", "one_time", "subscription", "metered")),
        sa.PrimaryKeyConstraint("pk", "tag", name="pk_listed_product_tags"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The price page is the start of one range of this index; the facets an index-only scan of it.
        op.create_index("ix_listed_product_tags_price", "listed_product_tags",
                        ["tag", "currency", "min_price", "pk"],
                        postgresql_include=["category", "grade", "has_free", "has_one_time",
                                            "has_subscription", "has_metered"])
        for stmt in (*PG_FUNCTIONS, *PG_TRIGGERS, FILL):
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS listed_product_tags_tags ON product_tags")
        op.execute("DROP TRIGGER IF EXISTS listed_product_tags_upd ON products")
        op.execute("DROP TRIGGER IF EXISTS listed_product_tags_ins_del ON products")
        op.execute("DROP FUNCTION IF EXISTS listed_product_tags_from_tags()")
        op.execute("DROP FUNCTION IF EXISTS listed_product_tags_from_products()")
    op.drop_table("listed_product_tags")
