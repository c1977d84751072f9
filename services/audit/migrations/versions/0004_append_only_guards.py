"""append-only guards from shared.migration_ops; SQLite also refuses INSERT OR REPLACE

Revision 0002 left a hole on SQLite: ``INSERT OR REPLACE`` (and ``REPLACE``) over a stored
row deletes it without firing DELETE triggers, so an ordinary connection could rewrite an
event in place. The guards now come from one helper shared with the orders ledger; on
PostgreSQL they are the same row and statement triggers as before, under one function.

Revision ID: 0004_append_only_guards
Revises: 0003_outbox_trace_context
Create Date: 2026-11-29
"""
from collections.abc import Sequence

from shared.migration_ops import create_append_only_guards, drop_append_only_function

revision: str = "0004_append_only_guards"
down_revision: str | None = "0003_outbox_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHAT = "the audit log"
#: Each append-only table and its keys (primary key first): a new row may not take a stored key.
UNIQUE_KEYS: dict[str, list[list[str]]] = {
    "events": [["seq"], ["event_id"]],
    "tree_nodes": [["level", "idx"]],
    "checkpoints": [["tree_size"]],
    "log_keys": [["id"]],
}
LEGACY_FUNCTION = "audit_reject_change"


def upgrade() -> None:
    # PostgreSQL: dropping 0002's function drops its triggers too; the helper makes new ones.
    drop_append_only_function(LEGACY_FUNCTION)
    for table, keys in UNIQUE_KEYS.items():
        create_append_only_guards(table, what=WHAT, unique_keys=keys)


def downgrade() -> None:
    drop_append_only_function()
    for table in UNIQUE_KEYS:
        # 0002's guards: no insert check on SQLite, the older function name on PostgreSQL.
        create_append_only_guards(table, what=WHAT, unique_keys=(), function=LEGACY_FUNCTION)
