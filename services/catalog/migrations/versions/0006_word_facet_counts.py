"""word_facet_counts: per search word, the facet counts of the listed products containing it

A one-word search (the commonest query, and the costliest to count: a common word is in a
tenth of the catalog) reads its total and facets from here instead of visiting every
matching product (services/catalog/search.py). One row per (lexeme, facet, value): the
total, each category, each grade, each plan kind — about twenty rows per word however
large the catalog. A trigger keeps it exact in the same transaction as every change to a
listed product's words or facet columns, behind one advisory lock so concurrent
publications cannot deadlock on shared words. PostgreSQL only (its lexemes are
``tsvector_to_array(search_vector)``); on SQLite the table exists and stays empty, and
searches count directly.

Revision ID: 0006_word_facet_counts
Revises: 0005_listed_facet_counts
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_word_facet_counts"
down_revision: str | None = "0005_listed_facet_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def facet_rows(row: str) -> str:
    """The (facet, value) pairs a listed product counts in, as a VALUES list."""
    kinds = ", ".join(f"('plan_kind', '{k}', {row}.has_{k})"
                      for k in ("free", "one_time", "subscription", "metered"))
    return (f"(VALUES ('total', '', true), ('category', {row}.category, true), ('grade', {row}.grade, true), "
            f"{kinds}) AS f(facet, value, counted)")


PG_FUNCTION = f"""
CREATE FUNCTION word_facet_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One writer at a time: two publications sharing words would otherwise lock the same
    -- counter rows in different orders.
    PERFORM pg_advisory_xact_lock(1397312834);
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'listed' THEN
        UPDATE word_facet_counts w SET n = w.n - 1
        FROM unnest(tsvector_to_array(OLD.search_vector)) AS l(lexeme), {facet_rows("OLD")}
        WHERE f.counted AND w.lexeme = l.lexeme AND w.facet = f.facet AND w.value = f.value;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'listed' THEN
        INSERT INTO word_facet_counts (lexeme, facet, value, n)
        SELECT l.lexeme, f.facet, f.value, 1
        FROM unnest(tsvector_to_array(NEW.search_vector)) AS l(lexeme), {facet_rows("NEW")}
        WHERE f.counted
        ON CONFLICT (lexeme, facet, value) DO UPDATE SET n = word_facet_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$
"""  # noqa: S608 - built from constants, no input
_WATCHED = ("status", "search_vector", "category", "grade", "has_free", "has_one_time", "has_subscription",
            "has_metered")
PG_TRIGGERS = [
    "CREATE TRIGGER word_facet_counts_ins_del AFTER INSERT OR DELETE ON products "
    "FOR EACH ROW EXECUTE FUNCTION word_facet_counts_track()",
    "CREATE TRIGGER word_facet_counts_upd AFTER UPDATE ON products FOR EACH ROW WHEN ("
    + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED)
    + ") EXECUTE FUNCTION word_facet_counts_track()",
]
FILL = f"""
INSERT INTO word_facet_counts (lexeme, facet, value, n)
SELECT l.lexeme, f.facet, f.value, count(*)
FROM products p, unnest(tsvector_to_array(p.search_vector)) AS l(lexeme), LATERAL {facet_rows("p")}
WHERE p.status = 'listed' AND f.counted
GROUP BY l.lexeme, f.facet, f.value
"""  # noqa: S608 - built from constants, no input


def upgrade() -> None:
    op.create_table(
        "word_facet_counts",
        sa.Column("lexeme", sa.Text(), nullable=False),
        sa.Column("facet", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lexeme", "facet", "value", name="pk_word_facet_counts"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for stmt in PG_TRIGGERS:
            op.execute(stmt)
        op.execute(FILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS word_facet_counts_upd ON products")
        op.execute("DROP TRIGGER IF EXISTS word_facet_counts_ins_del ON products")
        op.execute("DROP FUNCTION IF EXISTS word_facet_counts_track()")
    op.drop_table("word_facet_counts")
