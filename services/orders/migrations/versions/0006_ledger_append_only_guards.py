"""ledger_entries: the shared append-only guards (TRUNCATE refused on PostgreSQL, REPLACE on SQLite)

Revision 0002 guarded the ledger with a row trigger only: on PostgreSQL ``TRUNCATE
ledger_entries`` went through (the audit log had a statement trigger, the ledger did not), and
on SQLite ``INSERT OR REPLACE`` rewrote an entry in place. The guards now come from the helper
the audit log uses.

Revision ID: 0006_ledger_guards
Revises: 0005_outbox_trace_context
Create Date: 2026-11-29
"""
from collections.abc import Sequence

from alembic import op

from shared.migration_ops import create_append_only_guards, drop_append_only_function

revision: str = "0006_ledger_guards"
down_revision: str | None = "0005_outbox_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHAT = "the ledger"
UNIQUE_KEYS = [["id"], ["order_id", "kind", "account", "ref"]]
LEGACY_FUNCTION = "orders_ledger_append_only"


def upgrade() -> None:
    drop_append_only_function(LEGACY_FUNCTION)  # and 0002's row trigger with it (PostgreSQL)
    create_append_only_guards("ledger_entries", what=WHAT, unique_keys=UNIQUE_KEYS)


def downgrade() -> None:
    drop_append_only_function()
    if op.get_bind().dialect.name != "postgresql":
        create_append_only_guards("ledger_entries", what=WHAT, unique_keys=())
        return
    # 0002's single row trigger, which its downgrade drops by name.
    op.execute(f"CREATE FUNCTION {LEGACY_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
               "BEGIN RAISE EXCEPTION 'ledger_entries is append-only'; END $$")
    op.execute("CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
               f"FOR EACH ROW EXECUTE FUNCTION {LEGACY_FUNCTION}()")
