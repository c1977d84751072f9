"""listed_search: the listed products' match, order and facet columns in a narrow table

A search with several words (or words and category, grade or plan kind filters:
``search_pg.one_pass``) reads every match's order and facet columns. From ``products`` that is
one 1.6 KB-wide heap row per match, nearly always on its own page (the two commonest words
of a bench pair match ~10,000 products at 1M: ~10,000 pages read, most of them from outside
shared_buffers since the table is 1.6 GB). Here each listed product is one narrow row: pk,
listed_at, the facet columns and both text vectors, the vectors stored out of line
(``toast_tuple_target`` 128, STORAGE EXTERNAL and a pad that makes PostgreSQL toast every row:
see PG_SETUP), so the heap is ~125 B a row (~120 MB at 1M, about shared_buffers) and a match costs a visit to a page that is nearly always cached. The
vectors are indexed (GIN) here; the statement never reads them from the heap (no recheck for
plain word queries; the title tier is a second bitmap scan of the title index).

A trigger on ``products`` keeps it exact in the same transaction as every change: when a
product's status, listed_at, a facet column or a vector changes, its row is rewritten. Rows are
per product, so no shared counter is updated and no lock is needed. PostgreSQL only; on SQLite
the table exists without the vectors and stays empty (searches read ``products`` there).

Revision ID: 0012_listed_search
Revises: 0011_listed_product_tags
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_listed_search"
down_revision: str | None = "0011_listed_product_tags"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The product columns copied (pk first); a change to one of them (or to the status) rewrites the row.
COPIED = ("pk", "listed_at", "category", "grade", "has_free", "has_one_time", "has_subscription",
          "has_metered", "search_vector", "title_vector")
_COLS = ", ".join(COPIED)


def _from(row: str) -> str:
    return ", ".join(f"{row}.{c}" for c in COPIED)


# Built from the constant column list above; no input reaches these statements.
PG_SETUP = [
    # toast_pad: PostgreSQL toasts a row only when it is wider than ~2 KB (TOAST_TUPLE_THRESHOLD,
    # fixed at build time), and then down to toast_tuple_target. A row here is ~1 KB (the search
    # vector averages 840 B at 1M), so left alone it stays whole and the heap is 1 GB. The pad
    # (2 KB of spaces, compressed to a few dozen bytes) makes every row cross the threshold,
    # so the vectors always go out of line: the heap is then ~120 MB at 1M rows.
    "ALTER TABLE listed_search ADD COLUMN search_vector tsvector NOT NULL, "
    "ADD COLUMN title_vector tsvector NOT NULL, "
    "ADD COLUMN toast_pad text NOT NULL DEFAULT repeat(' ', 2048)",
    # Out of line and uncompressed: the heap keeps an 18-byte pointer per vector; the
    # statement never detoasts them (the GIN indexes answer the matches).
    "ALTER TABLE listed_search ALTER COLUMN search_vector SET STORAGE EXTERNAL, "
    "ALTER COLUMN title_vector SET STORAGE EXTERNAL",
    "ALTER TABLE listed_search SET (toast_tuple_target = 128)",
    f"""
CREATE FUNCTION listed_search_from_products() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'listed' THEN
        DELETE FROM listed_search WHERE pk = OLD.pk;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'listed' THEN
        INSERT INTO listed_search ({_COLS}) VALUES ({_from("NEW")});
    END IF;
    RETURN NULL;
END
$$
""",  # noqa: S608
    "CREATE TRIGGER listed_search_ins_del AFTER INSERT OR DELETE ON products "
    "FOR EACH ROW EXECUTE FUNCTION listed_search_from_products()",
    "CREATE TRIGGER listed_search_upd AFTER UPDATE ON products FOR EACH ROW WHEN ("
    + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ("status", *COPIED[1:]))
    + ") EXECUTE FUNCTION listed_search_from_products()",
]
FILL = f"INSERT INTO listed_search ({_COLS}) SELECT {_from('p')} FROM products p WHERE p.status = 'listed'"  # noqa: S608
#: Built after the fill (one build is far quicker than a million GIN insertions).
PG_INDEXES = [
    "CREATE INDEX ix_listed_search_search ON listed_search USING GIN (search_vector)",
    "CREATE INDEX ix_listed_search_title ON listed_search USING GIN (title_vector)",
    # Words with category and grade filters: a BitmapAnd with the word's GIN bitmap.
    "CREATE INDEX ix_listed_search_facets ON listed_search (category, grade)",
    "CREATE INDEX ix_listed_search_grade ON listed_search (grade)",
]


def upgrade() -> None:
    op.create_table(
        "listed_search",
        sa.Column("pk", sa.BigInteger(), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        *(sa.Column(f"has_{k}", sa.Boolean(), nullable=False)
          for k in ("free", "one_time", "subscription", "metered")),
        sa.PrimaryKeyConstraint("pk", name="pk_listed_search"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for stmt in (*PG_SETUP, FILL, *PG_INDEXES):
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS listed_search_upd ON products")
        op.execute("DROP TRIGGER IF EXISTS listed_search_ins_del ON products")
        op.execute("DROP FUNCTION IF EXISTS listed_search_from_products()")
    op.drop_table("listed_search")
