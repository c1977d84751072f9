"""The hot path of ``POST /v1/orders``: one read, then one atomic write of a free order.

Measured (docs/performance.md, orders): the general path cost ~15 database round trips per
free order — two ORM sessions, each with a pool pre-ping, BEGIN and COMMIT/ROLLBACK, the
order flushed ``pending_payment`` and then moved ``paid`` by a second UPDATE, and each
outbox row a statement of its own — and every round trip costs ~0.2 ms of the server's CPU
on this machine. Here:

* :func:`read_quote_and_key` — the quote and any order already made with the request's
  Idempotency-Key, in one autocommit statement (an asyncpg prepared statement on
  PostgreSQL, shared/hot_reads.py): what ``place_order`` decides on.
* :func:`write_free_order` — a free ``prepaid`` order (no Stripe, no ledger entries, no
  invoice: it moves no money) written as it ends its request: ``paid``, with the same two
  audit events (``orders.order.created``, ``orders.order.paid``) and the same grant command
  as ``transition`` writes, in that order, **in one transaction**. On PostgreSQL that
  transaction is one statement — the order ``INSERT … ON CONFLICT (buyer_org,
  idempotency_key) DO NOTHING``, the quote's compare-and-set ``UPDATE``, and the three
  outbox rows, chained by data-modifying CTEs, with a guard that aborts the statement if
  the quote was used meanwhile — one autocommit statement on a hot connection: one round
  trip, atomic. On SQLite the same rows are three Core statements in a transaction.

Guarantees are the general path's: the Idempotency-Key is still unique per buyer
organisation (a concurrent request with the same key makes the insert do nothing, and the
caller replays the stored order); a quote is still used once (``quotes.order_id IS NULL``
compare-and-set, and ``orders.quote_id`` is unique); the rows commit together or not at
all; the relays are woken only after the commit. Paid, trial and offer orders take the
general path (they call Stripe, record the trial, accept the offer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import asyncpg
from sqlalchemy import ColumnElement, Table, bindparam, insert, literal_column, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.orders.models import Order, Quote
from services.orders.orders import (
    ACCESS_DESTINATION,
    GRANT,
    PAID,
    PENDING,
    Who,
    grant_payload,
    paid_values,
    transition_details,
)
from shared.db import HOT_POOL, RELAY_WAKERS, RelayWakers
from shared.events import Actor, new_event
from shared.hot_reads import HotPool, HotQuery
from shared.logging import request_id_var
from shared.outbox import AUDIT_EVENT, WAKE_COALESCE_SECONDS, actor_of, outbox
from shared.tracing import current_carrier

_ORDERS = cast(Table, Order.__table__)
_QUOTES = cast(Table, Quote.__table__)

_existing: ColumnElement[Any] = (
    select(_ORDERS.c.id)
    .where(_ORDERS.c.buyer_org == bindparam("org"), _ORDERS.c.idempotency_key == bindparam("key"))
    .scalar_subquery()
)
_one = select(literal_column("1").label("one")).subquery()
#: The quote (its columns; all None when there is no such quote) and the id of the order this
#: organisation already made with this key (or None), in one statement.
_READ = HotQuery(
    select(*_QUOTES.c, _existing.label("existing_order_id"))
    .select_from(_one.outerjoin(_QUOTES, _QUOTES.c.id == bindparam("quote_id")))
)

_JSON_QUOTE_COLUMNS = [c.name for c in _QUOTES.c if c.type.__class__.__name__ == "JSON"]
_ORDER_COLUMNS = [c for c in _ORDERS.c]
_JSON_ORDER_COLUMNS = {c.name for c in _ORDER_COLUMNS if c.type.__class__.__name__ == "JSON"}

_n = len(_ORDER_COLUMNS)
#: PostgreSQL: the whole write in one statement (see the module docstring).
#: (Column names come from the model; every value is a $n parameter.)
_PG_WRITE = f"""
WITH o AS (
    INSERT INTO orders ({", ".join(c.name for c in _ORDER_COLUMNS)})
    VALUES ({", ".join(f"${i + 1}" for i in range(_n))})
    ON CONFLICT (buyer_org, idempotency_key) DO NOTHING
    RETURNING id
), q AS (
    UPDATE quotes SET order_id = o.id FROM o
    WHERE quotes.id = ${_n + 1} AND quotes.order_id IS NULL
    RETURNING quotes.id
), m AS (
    INSERT INTO outbox (kind, destination, message_id, payload, created_at, available_at, attempts,
                        trace_context)
    SELECT x.kind, x.destination, x.message_id, x.payload::json, ${_n + 2}::timestamptz,
           ${_n + 2}::timestamptz, 0, ${_n + 3}::text::json
    FROM o, unnest(${_n + 4}::varchar[], ${_n + 5}::varchar[], ${_n + 6}::varchar[], ${_n + 7}::text[])
            WITH ORDINALITY AS x(kind, destination, message_id, payload, n)
    ORDER BY x.n
    RETURNING 1
)
SELECT (SELECT count(*) FROM o) AS inserted, (SELECT count(*) FROM q) AS used,
       (SELECT count(*) FROM m) AS messages,
       -- The guard that makes this one statement all-or-nothing: an order written for a quote
       -- that was used meanwhile divides by zero, which aborts the statement and so undoes every
       -- CTE's write (orders.quote_id is unique too; this does not rely on it). Computed from
       -- the CTEs' results, so PostgreSQL cannot fold it away at planning time.
       1 / (1 - ((SELECT count(*) FROM o) - (SELECT count(*) FROM q))) AS guard
"""  # noqa: S608


#: ``POST /v1/quotes``: the quote's row as one autocommit ``INSERT`` (:func:`write_quote`).
_WRITE_QUOTE = HotQuery(insert(_QUOTES).values({c.name: bindparam(c.name) for c in _QUOTES.c}))


async def write_quote(sessionmaker: Any, quote: Quote) -> None:
    """Write a new quote (priced from the catalog alone: ``quotes.needs_session`` is false) as
    one autocommit ``INSERT`` on the hot pool — one round trip instead of the request
    transaction's pre-ping, BEGIN, INSERT and COMMIT. One row, so as atomic as that transaction;
    committed when this returns, like the request's commit before its response."""
    hot, engine, _ = _hot(sessionmaker)
    params = {c.name: getattr(quote, c.key) for c in _QUOTES.c}
    if hot.postgres:  # asyncpg takes JSON as text; SQLAlchemy serialises it itself
        for name in _JSON_QUOTE_COLUMNS:
            if params[name] is not None:
                params[name] = json.dumps(params[name])
    await _WRITE_QUOTE.execute(hot, engine, **params)


class QuoteTaken(Exception):
    """The quote was used by another order between the read and the write."""


class KeyTaken(Exception):
    """A concurrent request with the same Idempotency-Key made its order first."""


def _hot(sessionmaker: Any) -> tuple[HotPool, AsyncEngine, RelayWakers | None]:
    info = sessionmaker.kw.get("info", {})
    return info[HOT_POOL], sessionmaker.kw["bind"], info.get(RELAY_WAKERS)


def available(sessionmaker: Any) -> bool:
    """Whether the sessionmaker comes from a :class:`shared.db.Database` (it has a hot pool)."""
    return HOT_POOL in sessionmaker.kw.get("info", {})


async def read_quote_and_key(sessionmaker: Any, org: str, key: str,
                             quote_id: str) -> tuple[Quote | None, str | None]:
    """The quote ``quote_id`` (a detached row, or None) and the id of the order ``org``
    already made with ``key`` (or None), read in one autocommit statement."""
    hot, engine, _ = _hot(sessionmaker)
    row = await _READ.one_or_none(hot, engine, org=org, key=key, quote_id=quote_id)
    assert row is not None  # the outer join always yields its one row
    existing = row["existing_order_id"]
    if row["id"] is None:
        return None, existing
    values = {c.key: row[c.name] for c in _QUOTES.c}
    for name in _JSON_QUOTE_COLUMNS:  # asyncpg hands JSON over as text
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    return Quote(**values), existing


def _column_value(order: Order, column: Any) -> Any:
    value = getattr(order, column.key)
    if value is None and column.default is not None and column.default.is_scalar:
        value = column.default.arg  # what a flush would have filled in
        setattr(order, column.key, value)  # and the response shows
    return value


async def write_free_order(sessionmaker: Any, order: Order, who: Who, created_details: dict[str, Any],
                           now: datetime) -> None:
    """Write ``order`` (a free prepaid order, built ``pending_payment``) as ``paid`` with its
    events and grant command, in one transaction. Raises :class:`KeyTaken` when another
    request with the same key won, :class:`QuoteTaken` when the quote was used meanwhile
    (nothing is written then), or the database's error."""
    assert order.status == PENDING and order.gross == 0
    request_id = request_id_var.get()
    acting = who.actor()
    actor = acting if isinstance(acting, Actor) else actor_of(acting)
    created = new_event(service="orders", action="orders.order.created", subject_type="order",
                        subject_id=order.id, actor=actor, request_id=request_id,
                        details=created_details)
    for name, value in {"status": PAID, "updated_at": now, **paid_values(order, now)}.items():
        setattr(order, name, value)
    paid = new_event(service="orders", action="orders.order.paid", subject_type="order",
                     subject_id=order.id, actor=actor, request_id=request_id,
                     details=transition_details(order, PENDING, PAID, who, {"free": True}))
    row = {c.name: _column_value(order, c) for c in _ORDER_COLUMNS}
    grant = grant_payload(order)
    # The order of the general path: created event, grant command (in transition), paid event.
    messages = [
        (AUDIT_EVENT, "audit", str(created.event_id), created.model_dump(mode="json")),
        (GRANT, ACCESS_DESTINATION, f"grant:{order.id}", grant),
        (AUDIT_EVENT, "audit", str(paid.event_id), paid.model_dump(mode="json")),
    ]
    carrier = current_carrier()
    hot, engine, wakers = _hot(sessionmaker)
    if hot.postgres:
        await _write_pg(hot, order, row, messages, now, carrier)
    else:
        await _write_sqlite(engine, order, row, messages, now, carrier)
    if wakers is not None:  # committed: wake the relays, as enqueue's after-commit hook does
        wakers.wake(ACCESS_DESTINATION)
        wakers.wake_soon("audit", WAKE_COALESCE_SECONDS)


async def _write_pg(hot: HotPool, order: Order, row: dict[str, Any],
                    messages: list[tuple[str, str, str, Any]], now: datetime,
                    carrier: Mapping[str, str] | None) -> None:
    args: list[Any] = [json.dumps(value) if name in _JSON_ORDER_COLUMNS and value is not None else value
                       for name, value in row.items()]
    args += [order.quote_id, now, json.dumps(carrier) if carrier is not None else None,
             [m[0] for m in messages], [m[1] for m in messages], [m[2] for m in messages],
             [json.dumps(m[3]) for m in messages]]
    pool = await hot.pool()
    async with pool.acquire() as conn:
        try:
            # One autocommit statement: one round trip, atomic (no BEGIN/COMMIT round trips).
            row = await conn.fetchrow(_PG_WRITE, *args)
        except (asyncpg.exceptions.UniqueViolationError, asyncpg.exceptions.DivisionByZeroError):
            # Another order took the quote between our read and our write (orders.quote_id
            # unique, or the guard): nothing was written.
            raise QuoteTaken from None
        except (asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.InterfaceError,
                ConnectionError, OSError):
            conn.terminate()  # never reused; the pool opens another in its place
            raise
    assert row is not None and row["used"] == row["inserted"] == row["messages"] / 3
    if not row["inserted"]:
        raise KeyTaken


async def _write_sqlite(engine: AsyncEngine, order: Order, row: dict[str, Any],
                        messages: list[tuple[str, str, str, Any]], now: datetime,
                        carrier: Mapping[str, str] | None) -> None:
    try:
        async with engine.begin() as conn:
            inserted = await conn.execute(
                sqlite.insert(_ORDERS).values(row)
                .on_conflict_do_nothing(index_elements=["buyer_org", "idempotency_key"]))
            if inserted.rowcount != 1:
                raise KeyTaken
            used = await conn.execute(update(_QUOTES).where(_QUOTES.c.id == order.quote_id,
                                                            _QUOTES.c.order_id.is_(None))
                                      .values(order_id=order.id))
            if used.rowcount != 1:
                raise QuoteTaken
            await conn.execute(insert(outbox), [
                {"kind": kind, "destination": dest, "message_id": mid, "payload": payload,
                 "created_at": now, "available_at": now, "attempts": 0, "trace_context": carrier}
                for kind, dest, mid, payload in messages])
    except IntegrityError:
        raise QuoteTaken from None
