"""listed_facet_counts: facet counts of listed products, maintained by triggers

One row per combination of the facet columns (category, grade, currency, plan kinds) with the
number of listed products in it: a few hundred rows however large the catalog, so a search
without words, tag, provider or price cap reads its total and facets from here instead of
counting every matching product (services/catalog/search.py). Triggers keep it exact in the
same transaction as every change to a product; the table is filled from the products
already listed.

Revision ID: 0005_listed_facet_counts
Revises: 0004_version_public_documents
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_listed_facet_counts"
down_revision: str | None = "0004_version_public_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CELL = ("category", "grade", "currency", "has_free", "has_one_time", "has_subscription", "has_metered")
_COLS = ", ".join(CELL)


def _values(row: str) -> str:
    # A product without plans has no currency: '' keeps it in the primary key.
    return ", ".join(f"coalesce({row}.currency, '')" if c == "currency" else f"{row}.{c}" for c in CELL)


def _changed(distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in ("status", *CELL))


_CHANGED = _changed("IS DISTINCT FROM")
_SQLITE_CHANGED = _changed("IS NOT")

# Built from the constant column list above; no input reaches these statements.
PG_FUNCTION = f"""
CREATE FUNCTION listed_facet_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'listed' THEN
        UPDATE listed_facet_counts SET n = n - 1
        WHERE ({_COLS}) = ({_values("OLD")});
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'listed' THEN
        INSERT INTO listed_facet_counts ({_COLS}, n) VALUES ({_values("NEW")}, 1)
        ON CONFLICT ({_COLS}) DO UPDATE SET n = listed_facet_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$
"""  # noqa: S608
PG_TRIGGERS = [
    "CREATE TRIGGER listed_facet_counts_ins_del AFTER INSERT OR DELETE ON products "
    "FOR EACH ROW EXECUTE FUNCTION listed_facet_counts_track()",
    # Only when a counted column changes: draft edits and the like leave the counts alone.
    f"CREATE TRIGGER listed_facet_counts_upd AFTER UPDATE ON products FOR EACH ROW WHEN ({_CHANGED}) "
    "EXECUTE FUNCTION listed_facet_counts_track()",
]

_SQLITE_ADD = (f"INSERT INTO listed_facet_counts ({_COLS}, n) VALUES ({_values('NEW')}, 1) "  # noqa: S608
               f"ON CONFLICT ({_COLS}) DO UPDATE SET n = n + 1;")
_SQLITE_SUB = f"UPDATE listed_facet_counts SET n = n - 1 WHERE ({_COLS}) = ({_values('OLD')});"  # noqa: S608
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER listed_facet_counts_ins AFTER INSERT ON products WHEN NEW.status = 'listed' "
    f"BEGIN {_SQLITE_ADD} END",
    f"CREATE TRIGGER listed_facet_counts_del AFTER DELETE ON products WHEN OLD.status = 'listed' "
    f"BEGIN {_SQLITE_SUB} END",
    f"CREATE TRIGGER listed_facet_counts_upd_old AFTER UPDATE ON products "
    f"WHEN OLD.status = 'listed' AND ({_SQLITE_CHANGED}) BEGIN {_SQLITE_SUB} END",
    f"CREATE TRIGGER listed_facet_counts_upd_new AFTER UPDATE ON products "
    f"WHEN NEW.status = 'listed' AND ({_SQLITE_CHANGED}) BEGIN {_SQLITE_ADD} END",
]
TRIGGER_NAMES = {"postgresql": ["listed_facet_counts_ins_del", "listed_facet_counts_upd"],
                 "sqlite": ["listed_facet_counts_ins", "listed_facet_counts_del",
                            "listed_facet_counts_upd_old", "listed_facet_counts_upd_new"]}

FILL = (f"INSERT INTO listed_facet_counts ({_COLS}, n) SELECT {_values('products')}, count(*) "  # noqa: S608
        f"FROM products WHERE status = 'listed' GROUP BY {_values('products')}")


def upgrade() -> None:
    op.create_table(
        "listed_facet_counts",
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("has_free", sa.Boolean(), nullable=False),
        sa.Column("has_one_time", sa.Boolean(), nullable=False),
        sa.Column("has_subscription", sa.Boolean(), nullable=False),
        sa.Column("has_metered", sa.Boolean(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*CELL, name="pk_listed_facet_counts"),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        for stmt in PG_TRIGGERS:
            op.execute(stmt)
    else:
        for stmt in SQLITE_TRIGGERS:
            op.execute(stmt)
    op.execute(FILL)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in TRIGGER_NAMES["postgresql" if dialect == "postgresql" else "sqlite"]:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON products" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS listed_facet_counts_track()")
    op.drop_table("listed_facet_counts")
