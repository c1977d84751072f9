"""Attacks on the append-only tables from an ordinary database connection.

The audit log's tables and the orders ledger must refuse, on both back ends, every way of
changing a stored row: UPDATE, DELETE, TRUNCATE (PostgreSQL), an upsert that updates an existing
row, and (SQLite) ``INSERT OR REPLACE``/``REPLACE``, whose implicit deletion fires no DELETE
trigger. Each attack is tried on a migrated database, then the row is checked to be unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.audit import models as audit_models
from services.orders.models import LedgerEntry
from tests.conftest import DatabaseFactory

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LEDGER: Table = LedgerEntry.__table__  # type: ignore[assignment]

#: table → (service, a stored row, the column an attacker forges, the forged SQL value, the key columns).
TARGETS: dict[str, tuple[str, dict[str, Any], str, str, list[str]]] = {
    "events": ("audit", {
        "seq": 0, "event_id": "0e6c5d8a-0000-4000-8000-000000000000", "occurred_at": NOW,
        "received_at": NOW, "service": "orders", "action": "orders.order.paid", "actor_sub": "cli_1",
        "actor_org": "org_1", "actor_role": "buyer", "subject_type": "order", "subject_id": "ord_1",
        "outcome": "success", "request_id": "req-1", "details": {"amount": 100}, "leaf_hash": b"\x01" * 32,
    }, "action", "'orders.order.refunded'", ["seq"]),
    "tree_nodes": ("audit", {"level": 4, "idx": 0, "hash": b"\x02" * 32}, "hash", "hash", ["level", "idx"]),
    "checkpoints": ("audit", {"tree_size": 16, "root_hash": b"\x03" * 32, "note": "signed",
                              "key_id": "abcd0123", "created_at": NOW}, "note", "'forged'", ["tree_size"]),
    "log_keys": ("audit", {"id": 1, "key_name": "log", "private_key": "secret", "created_at": NOW},
                 "private_key", "'attacker'", ["id"]),
    "ledger_entries": ("orders", {
        "id": 1, "order_id": "ord_1", "kind": "charge", "account": "gross", "buyer_org": "org_b",
        "provider_org": "org_p", "currency": "EUR", "amount": 9800, "ref": "", "created_at": NOW,
    }, "amount", "1", ["id"]),
}


def table_of(name: str) -> Table:
    return LEDGER if name == "ledger_entries" else getattr(audit_models, name)  # type: ignore[no-any-return]


def copy_of_rows(table: Table, forged: dict[str, str], prefix: str, suffix: str = "") -> str:
    """``<prefix> INTO t (cols) SELECT cols FROM t`` with some columns replaced by SQL values."""
    cols = [c.name for c in table.columns]
    values = ", ".join(forged.get(c, c) for c in cols)
    return f"{prefix} INTO {table.name} ({', '.join(cols)}) SELECT {values} FROM {table.name} WHERE 1 = 1 {suffix}"


def attacks(name: str, dialect: str) -> list[str]:
    _service, _row, column, value, key = TARGETS[name]
    table = table_of(name)
    found = [
        f"UPDATE {name} SET {column} = {value}",
        f"DELETE FROM {name}",
        # An upsert over the stored row (the conflict turns into an UPDATE).
        copy_of_rows(table, {}, "INSERT",
                     f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {column} = excluded.{column}"),
    ]
    if dialect == "postgresql":
        found.append(f"TRUNCATE {name}")
    else:
        # REPLACE deletes the conflicting row without firing DELETE triggers, then inserts.
        found.append(copy_of_rows(table, {column: value}, "INSERT OR REPLACE"))
        found.append(copy_of_rows(table, {column: value}, "REPLACE"))
        unique = {"events": "event_id", "ledger_entries": "order_id"}.get(name)
        if unique is not None:  # same unique key, a new primary key: the old row is replaced
            first = key[0]
            found.append(copy_of_rows(table, {first: f"{first} + 1000", column: value}, "INSERT OR REPLACE"))
    return found


@pytest.mark.parametrize("name", list(TARGETS))
async def test_an_ordinary_connection_cannot_change_a_stored_row(
        name: str, database_url: DatabaseFactory) -> None:
    service, row, _column, _value, _key = TARGETS[name]
    table = table_of(name)
    engine = create_async_engine(database_url(service))
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(table).values(**row))
        dialect = engine.dialect.name
        got_through = []
        for sql in attacks(name, dialect):
            async with engine.connect() as conn:
                try:
                    await conn.execute(text(sql))
                    await conn.commit()
                    got_through.append(sql)
                except DBAPIError as exc:
                    assert "append-only" in str(exc), sql
                    await conn.rollback()
        assert not got_through, f"{name}: the database let these through"
        async with engine.connect() as conn:
            stored = [dict(r._mapping) for r in await conn.execute(select(table))]
        assert stored == [row], f"{name} changed"
    finally:
        await engine.dispose()
