"""listed_title_words: per title/tag word, the listed products containing it, newest first

A one-word search ranks the newest RANK_WINDOW products with the word in their title or tags
(services/catalog/search.py). From the GIN index that window costs a heap visit per match
(a common word is in ~1,000 titles, each on its own page of 1.6 KB-wide ``products`` rows)
and a sort by ``listed_at``; here it is the first entries of one btree range: one row per
(lexeme of ``title_vector``, listed product), keyed (lexeme, listed_at, pk) so a backward
scan gives exactly the order search uses (``listed_at DESC, pk DESC``; a null ``listed_at``,
which PostgreSQL sorts first in that order, is stored as ``infinity``, which sorts the same).

A trigger keeps it exact in the same transaction as every change to a product's status,
title/tag words or listed_at. Rows are per product, so unlike word_facet_counts no shared
counter is updated and no lock is needed. PostgreSQL only (its lexemes come from
``tsvector_to_array(title_vector)``); on SQLite the table exists and stays empty, and
searches use the full-text index as before.

Revision ID: 0010_listed_title_words
Revises: 0009_outbox_dead_letter
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_listed_title_words"
down_revision: str | None = "0009_outbox_dead_letter"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_FUNCTION = """
CREATE FUNCTION listed_title_words_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'listed' THEN
        DELETE FROM listed_title_words
        WHERE lexeme = ANY (tsvector_to_array(OLD.title_vector))
          AND listed_at = coalesce(OLD.listed_at, 'infinity') AND pk = OLD.pk;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'listed' THEN
        INSERT INTO listed_title_words (lexeme, listed_at, pk)
        SELECT l.lexeme, coalesce(NEW.listed_at, 'infinity'), NEW.pk
        FROM unnest(tsvector_to_array(NEW.title_vector)) AS l(lexeme);
    END IF;
    RETURN NULL;
END
$$
"""
PG_TRIGGERS = [
    "CREATE TRIGGER listed_title_words_ins_del AFTER INSERT OR DELETE ON products "
    "FOR EACH ROW EXECUTE FUNCTION listed_title_words_track()",
    "CREATE TRIGGER listed_title_words_upd AFTER UPDATE ON products FOR EACH ROW WHEN ("
    "OLD.status IS DISTINCT FROM NEW.status OR OLD.title_vector IS DISTINCT FROM NEW.title_vector "
    "OR OLD.listed_at IS DISTINCT FROM NEW.listed_at"
    ") EXECUTE FUNCTION listed_title_words_track()",
]
FILL = """
INSERT INTO listed_title_words (lexeme, listed_at, pk)
SELECT l.lexeme, coalesce(p.listed_at, 'infinity'), p.pk
FROM products p, unnest(tsvector_to_array(p.title_vector)) AS l(lexeme)
WHERE p.status = 'listed'
"""


def upgrade() -> None:
    op.create_table(
        "listed_title_words",
        sa.Column("lexeme", sa.Text(), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lexeme", "listed_at", "pk", name="pk_listed_title_words"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for stmt in PG_TRIGGERS:
            op.execute(stmt)
        op.execute(FILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS listed_title_words_upd ON products")
        op.execute("DROP TRIGGER IF EXISTS listed_title_words_ins_del ON products")
        op.execute("DROP FUNCTION IF EXISTS listed_title_words_track()")
    op.drop_table("listed_title_words")
