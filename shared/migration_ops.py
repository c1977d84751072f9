"""Migration helpers shared by services (used from ``migrations/versions``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime


def create_outbox_table() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("available_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("delivered_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["destination", "delivered_at", "available_at"])


def drop_outbox_table() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")


def add_outbox_trace_context() -> None:
    """The outbox's nullable ``trace_context`` (W3C trace headers of the writing span)."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("trace_context", sa.JSON(none_as_null=True), nullable=True))


def drop_outbox_trace_context() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("trace_context")


# --- Append-only tables -----------------------------------------------------------------

#: PostgreSQL trigger function shared by every append-only table of a database; its one
#: argument names what the table holds ("the audit log", "the ledger") for the message.
APPEND_ONLY_FUNCTION = "append_only_reject"


def create_append_only_guards(
    table: str, *, what: str, unique_keys: Sequence[Sequence[str]], function: str = APPEND_ONLY_FUNCTION,
) -> None:
    """Make ``table`` refuse every change to a stored row, from any ordinary connection.

    PostgreSQL: a row trigger (UPDATE, DELETE; an upsert's ``DO UPDATE`` fires it too) and a
    statement trigger (UPDATE, DELETE, TRUNCATE: it also fires for statements that match no
    row, and TRUNCATE has no rows). SQLite: UPDATE and DELETE triggers, and a BEFORE INSERT
    check that refuses a row whose key (each of ``unique_keys``) is already stored, because
    ``INSERT OR REPLACE``/``REPLACE`` delete the old row without firing DELETE triggers.
    The SQLite refusal is an integrity error, like the unique constraint it runs before.
    Idempotent: guards of the same name are replaced. ``function`` names the PostgreSQL
    trigger function (a downgrade may restore an earlier revision's name).
    """
    drop_append_only_guards(table)
    message = f"{what} is append-only"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % on % is not allowed', "
            "TG_ARGV[0], TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        for level, verbs in (("row", "UPDATE OR DELETE"), ("stmt", "UPDATE OR DELETE OR TRUNCATE")):
            each = "ROW" if level == "row" else "STATEMENT"
            op.execute(f"CREATE TRIGGER {table}_append_only_{level} BEFORE {verbs} ON {table} "
                       f"FOR EACH {each} EXECUTE FUNCTION {function}('{what}')")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                   f"SELECT RAISE(ABORT, '{message}: {verb} on {table} is not allowed'); END")
    if unique_keys:
        stored = " OR ".join(
            "(" + " AND ".join(f"{c} = NEW.{c}" for c in key) + ")" for key in unique_keys)
        # Built from the migration's constant names, no input.
        ddl = (f"CREATE TRIGGER {table}_no_overwrite BEFORE INSERT ON {table} "  # noqa: S608
               f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {stored}) BEGIN "
               f"SELECT RAISE(ABORT, '{message}: a stored row of {table} cannot be replaced'); END")
        op.execute(ddl)


def drop_append_only_guards(table: str) -> None:
    """Remove what :func:`create_append_only_guards` installed on ``table`` (the PostgreSQL
    function stays: other tables use it; :func:`drop_append_only_function` removes it)."""
    if op.get_bind().dialect.name == "postgresql":
        for level in ("row", "stmt"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{level} ON {table}")
    else:
        for name in ("no_update", "no_delete", "no_overwrite"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{name}")


def drop_append_only_function(function: str = APPEND_ONLY_FUNCTION) -> None:
    """Drop the PostgreSQL trigger function and, with it, every trigger still using it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")


def add_outbox_dead_letter() -> None:
    """The outbox's nullable ``dead_at``: when a receiver refused the message for good
    (see ``shared.outbox.check_delivered``); the relay no longer sends it."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("dead_at", UTCDateTime(), nullable=True))


def drop_outbox_dead_letter() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("dead_at")
