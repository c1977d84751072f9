"""log: events, Merkle tree nodes, checkpoints, signing keys, append-only triggers

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

APPEND_ONLY_TABLES = ("events", "tree_nodes", "checkpoints", "log_keys")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("actor_sub", sa.Text()),
        sa.Column("actor_org", sa.Text()),
        sa.Column("actor_role", sa.Text()),
        sa.Column("subject_type", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_action_seq", "events", ["action", "seq"])
    op.create_index("ix_events_actor_org_seq", "events", ["actor_org", "seq"])
    op.create_index("ix_events_actor_sub_seq", "events", ["actor_sub", "seq"])
    op.create_index("ix_events_subject_seq", "events", ["subject_type", "subject_id", "seq"])
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"])
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger(), nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_tree_nodes"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_checkpoints"),
    )
    op.create_table(
        "log_keys",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_keys"),
    )
    # SQLite only: writers start their transaction with a no-op UPDATE of this
    # (empty) table, which takes the database write lock before they read the
    # tree size (PostgreSQL uses an advisory lock instead).
    op.create_table(
        "writer_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_writer_lock"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'the audit log is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in APPEND_ONLY_TABLES:
            # Row triggers catch every changed row; statement triggers also catch
            # statements that match no row, and TRUNCATE (which has no rows).
            op.execute(
                f"CREATE TRIGGER {table}_append_only_row BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_reject_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_append_only_stmt BEFORE UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()"
            )
    else:
        for table in APPEND_ONLY_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                    f"SELECT RAISE(ABORT, 'the audit log is append-only: {verb} on {table} is not allowed'); "
                    "END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_stmt ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_row ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_reject_change()")
    else:
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.drop_table("writer_lock")
    op.drop_table("log_keys")
    op.drop_table("checkpoints")
    op.drop_table("tree_nodes")
    op.drop_index("ix_events_occurred_at", table_name="events")
    op.drop_index("ix_events_subject_seq", table_name="events")
    op.drop_index("ix_events_actor_sub_seq", table_name="events")
    op.drop_index("ix_events_actor_org_seq", table_name="events")
    op.drop_index("ix_events_action_seq", table_name="events")
    op.drop_table("events")
