"""The append-only log: ordered appends, tree storage and proofs.

One ordered writer assigns sequence numbers. Inside a process, concurrent
appends are combined into one transaction (group commit) behind an asyncio
lock; across processes, PostgreSQL's transaction-level advisory lock orders the
writers (SQLite's database write lock does the same for one file). Inside the
transaction the writer reads the current size, assigns ``seq = size + i``,
inserts events with their leaf hashes and the newly completed subtree nodes,
and commits: all or nothing, so sequence numbers never have gaps or duplicates.

Idempotency is optimistic: the unique index on ``event_id`` already checks
every insert, so a group is first written as if all its events were new; only
when that insert hits an event id already stored (a producer re-sending after a
timeout) is the transaction rolled back and the group written again, this time
looking the stored ids up first and skipping them. Re-sends are rare; looking
every id up on every write would do the index's work twice.

Everything per event that does not depend on ``seq`` (validation, canonical
JSON) happens before the writer lock, in the request's own task, so the writer
is never held up by parsing: under the lock it only numbers, hashes, folds the
tree and inserts whole groups as column arrays (one statement per table).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import TypeAdapter
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit import merkle
from services.audit.models import events, tree_nodes, writer_lock
from services.audit.tree import TreeCache, fetch_nodes, tree_size
from services.audit.verifylib import canonical_json, is_plain_json, leaf_hash
from shared.db import utcnow
from shared.errors import RuleViolation
from shared.events import AuditEvent

logger = logging.getLogger("sluice.audit")

#: pg_advisory_xact_lock key of the single ordered writer ("sluice audit append").
APPEND_LOCK_KEY = 0x51C1A0D1
#: Most events one combined transaction takes from the queue.
MAX_GROUP_EVENTS = 5000

_datetime_json = TypeAdapter(datetime)


@dataclass(frozen=True)
class AppendResult:
    event_id: str
    seq: int
    duplicate: bool


# The stored event's top-level keys in RFC 8785 order, split where the two keys
# the writer adds (received_at, seq) fall.
_BEFORE_RECEIVED_AT = ("action", "actor", "details", "event_id", "occurred_at", "outcome")
_AFTER_SEQ = ("service", "subject")
assert set(AuditEvent.model_fields) == {*_BEFORE_RECEIVED_AT, "request_id", *_AFTER_SEQ}, (
    "shared.events.AuditEvent changed: update the leaf assembly in services/audit/log.py"
)


_REQUEST_ID_KEY = b',"request_id":'
_SERVICE_KEY = b',"service":'


#: An event's stored column values but seq, received_at and leaf_hash, in table order:
#: (event_id, occurred_at, service, action, actor_sub, actor_org, actor_role,
#: subject_type, subject_id, outcome, request_id, details as JSON text).
Columns = tuple[str, datetime, str, str, str | None, str | None, str | None, str, str, str, str | None, str]


@dataclass
class PreparedEvent:
    """An event serialised once, before the writer lock: its canonical JSON cut
    in three pieces, around where ``received_at`` and ``seq`` go, and its column
    values (so the writer only numbers, hashes and copies)."""

    event_id: str
    columns: Columns = field(repr=False)
    head: bytes = field(repr=False)  # {"action":...,"outcome":...}
    request_id: bytes = field(repr=False)  # the request_id value
    tail: bytes = field(repr=False)  # {"service":...,"subject":...}




def stored_event_json(event_json: Mapping[str, Any], seq: int, received_at: datetime) -> dict[str, Any]:
    """``StoredEvent.model_dump(mode="json")`` from an AuditEvent's JSON dump."""
    return {**event_json, "seq": seq, "received_at": _datetime_json.dump_python(received_at, mode="json")}


def leaf_bytes(p: PreparedEvent, seq: int, received_at_json: bytes) -> bytes:
    """RFC 8785 JSON of the stored event, assembled from canonical pieces.

    JCS serialises an object as its members sorted by key (the keys here are
    fixed ASCII names, so byte order is JCS's UTF-16 order), each value in its
    own canonical form, so splicing ``received_at`` and ``seq`` into their
    sorted places gives exactly ``canonical_json(stored_event_json(...))``,
    the verifier's definition (tests compare the two), without canonicalising
    each event twice.
    """
    return (
        p.head[:-1] + b',"received_at":' + received_at_json + b',"request_id":' + p.request_id
        + b',"seq":' + str(seq).encode() + b"," + p.tail[1:]
    )


def canonical_event_json(event_json: dict[str, Any]) -> bytes:
    """RFC 8785 JSON of an AuditEvent's JSON dump, quickly.

    Every member but ``details`` is typed (strings, nulls, fixed ASCII keys), so when
    ``details`` is plain JSON (see :func:`is_plain_json`) sorted-key orjson output is
    already canonical; orjson refuses lone surrogates, which then take the general path
    like every other unusual value (tests compare both with ``rfc8785``)."""
    if is_plain_json(event_json["details"]):
        try:
            return orjson.dumps(event_json, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            pass
    return canonical_json(event_json)


def details_text(details: dict[str, Any]) -> str:
    try:
        return orjson.dumps(details).decode()
    except TypeError:  # what orjson refuses (lone surrogates, integers beyond 64 bits)
        return json.dumps(details)


def columns_of(event: AuditEvent) -> Columns:
    actor, subject = event.actor, event.subject
    return (str(event.event_id), event.occurred_at, event.service, event.action, actor.sub, actor.org,
            actor.role, subject.type, subject.id, event.outcome, event.request_id,
            details_text(event.details))


def prepare(batch: Sequence[AuditEvent]) -> list[PreparedEvent]:
    """Serialise and check that every event can be canonicalised (RFC 8785),
    so a bad event is refused before it can reach the writer."""
    out = []
    for i, event in enumerate(batch):
        try:
            whole = canonical_event_json(event.model_dump(mode="json"))
        except ValueError as exc:
            raise RuleViolation(
                f"events[{i}] cannot be canonicalised as RFC 8785 JSON ({exc}); "
                "use integers within ±2^53 and finite numbers in details.",
                rule="canonical-json",
            ) from exc
        if b"\\u0000" in whole:
            raise RuleViolation(
                f"events[{i}] contains a NUL character; remove it from every string.",
                rule="no-nul-characters",
            )
        out.append(split_canonical(whole, columns_of(event)))
    return out


def split_canonical(whole: bytes, columns: Columns) -> PreparedEvent:
    """A prepared event from the canonical JSON of its ``AuditEvent`` JSON dump."""
    # Cut at the top-level keys: inside JSON strings every '"' is escaped,
    # so ',"key":' only occurs at object keys, and after the top-level
    # request_id only service and subject ({"id","type"}) follow; the last
    # occurrence of each marker is therefore the top-level one (details,
    # which may nest such keys, comes earlier).
    at_request_id = whole.rindex(_REQUEST_ID_KEY)
    at_service = whole.rindex(_SERVICE_KEY)
    head = whole[:at_request_id] + b"}"
    request_id = whole[at_request_id + len(_REQUEST_ID_KEY) : at_service]
    tail = b"{" + whole[at_service + 1 :]
    return PreparedEvent(columns[0], columns, head, request_id, tail)


@dataclass
class _Pending:
    prepared: list[PreparedEvent]
    future: asyncio.Future[list[AppendResult]]


async def load_frontier(session: AsyncSession, size: int) -> dict[int, bytes]:
    nodes = merkle.frontier_nodes(size)
    stored = await fetch_nodes(session, merkle.plan([(n[1] << n[0], (n[1] + 1) << n[0]) for n in nodes]))
    return {level: merkle.node_from_stored((level, idx), stored) for level, idx in nodes}


async def existing_seqs(session: AsyncSession, event_ids: list[str]) -> dict[str, int]:
    """Sequence numbers of the given event ids already in the log."""
    found: dict[str, int] = {}
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(
            text("SELECT event_id, seq FROM events WHERE event_id = ANY(CAST(:ids AS varchar[]))"),
            {"ids": event_ids},
        )
        return {eid: int(seq) for eid, seq in rows}
    for start in range(0, len(event_ids), 500):  # SQLite caps bound parameters
        chunk = event_ids[start : start + 500]
        rows = await session.execute(
            select(events.c.event_id, events.c.seq).where(events.c.event_id.in_(chunk))
        )
        found.update({eid: int(seq) for eid, seq in rows})
    return found


# --- the ordered writer ------------------------------------------------------------


async def take_write_lock(session: AsyncSession, key: int) -> None:
    """Serialise writers across processes for the rest of the transaction.

    PostgreSQL: a transaction-level advisory lock. SQLite: a write statement
    first (an UPDATE that matches no row), so the transaction holds the
    database write lock *before* it reads the tree size; reading first would
    let two writers start from the same size and one fail at commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        await session.execute(
            writer_lock.update().where(writer_lock.c.id == -1).values(id=writer_lock.c.id)
        )


class LogWriter:
    """Appends batches in one total order (see the module docstring)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], cache: TreeCache | None = None
    ) -> None:
        self.sessionmaker = sessionmaker
        self.cache = cache  # told every size this writer commits
        self._lock = asyncio.Lock()
        self._queue: list[_Pending] = []
        # Right edge of the tree at a known size; valid only while the stored
        # size still equals it (another process may have appended meanwhile).
        self._frontier: tuple[int, dict[int, bytes]] | None = None

    async def append(self, batch: Sequence[AuditEvent]) -> list[AppendResult]:
        return await self.append_prepared(prepare(batch))

    async def append_prepared(self, prepared: list[PreparedEvent]) -> list[AppendResult]:
        """Append events already prepared (``prepare``, or ``services.audit.fast_batch``)."""
        pending = _Pending(prepared, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        async with self._lock:
            # Whoever holds the lock writes everything queued so far in one
            # transaction; the others find their result ready when they get in.
            while not pending.future.done():
                group: list[_Pending] = []
                total = 0
                while self._queue and (not group or total + len(self._queue[0].prepared) <= MAX_GROUP_EVENTS):
                    item = self._queue.pop(0)
                    group.append(item)
                    total += len(item.prepared)
                try:
                    results = await self._write([item.prepared for item in group])
                except Exception as exc:
                    for item in group:
                        item.future.set_exception(exc)
                except BaseException:
                    for item in group:
                        item.future.cancel()
                    raise
                else:
                    for item, res in zip(group, results, strict=True):
                        item.future.set_result(res)
        return pending.future.result()

    async def _write(self, groups: list[list[PreparedEvent]]) -> list[list[AppendResult]]:
        try:
            return await self._write_group(groups, look_up_stored=False)
        except (IntegrityError, asyncpg.UniqueViolationError):
            # An event id is already in the log (a re-send): write again, skipping stored ids.
            return await self._write_group(groups, look_up_stored=True)

    async def _write_group(
        self, groups: list[list[PreparedEvent]], *, look_up_stored: bool
    ) -> list[list[AppendResult]]:
        async with self.sessionmaker() as session, session.begin():
            await take_write_lock(session, APPEND_LOCK_KEY)
            existing = (
                await existing_seqs(session, list({p.event_id for g in groups for p in g}))
                if look_up_stored else {}
            )
            size = await tree_size(session)
            if self._frontier is not None and self._frontier[0] == size:
                frontier = self._frontier[1]
            else:
                frontier = await load_frontier(session, size)
            received_at = utcnow()
            received_json = canonical_json(_datetime_json.dump_python(received_at, mode="json"))
            assigned: dict[str, int] = {}
            kept: list[PreparedEvent] = []
            leaves: list[bytes] = []
            results: list[list[AppendResult]] = []
            for group in groups:
                res: list[AppendResult] = []
                for p in group:
                    if p.event_id in existing:
                        res.append(AppendResult(p.event_id, existing[p.event_id], True))
                        continue
                    if p.event_id in assigned:  # repeated within this transaction
                        res.append(AppendResult(p.event_id, assigned[p.event_id], True))
                        continue
                    seq = size + len(kept)
                    assigned[p.event_id] = seq
                    leaves.append(leaf_hash(leaf_bytes(p, seq, received_json)))
                    kept.append(p)
                    res.append(AppendResult(p.event_id, seq, False))
                results.append(res)
            new_frontier = frontier
            if kept:
                nodes, new_frontier = merkle.append_leaves(size, frontier, leaves)
                await insert_rows(session, kept, size, received_at, leaves, nodes)
        self._frontier = (size + len(kept), new_frontier)
        if self.cache is not None:
            self.cache.saw_size(size + len(kept))
        return results


# PostgreSQL: the group's events go in with one binary COPY (asyncpg's
# copy_records_to_table on the transaction's own connection): measured against the
# previous INSERT ... SELECT FROM unnest(15 arrays), PostgreSQL's work per row is
# the same (it is the table's indexes), but the client's encoding is ~2.5x cheaper
# (7 vs 18 µs per row, docs/performance.md) and the client is the scarce core.
# Tree nodes (~1/15 row per event) keep the one-statement unnest insert.
_EVENT_COLUMNS = [
    "seq", "event_id", "occurred_at", "received_at", "service", "action", "actor_sub", "actor_org",
    "actor_role", "subject_type", "subject_id", "outcome", "request_id", "details", "leaf_hash",
]
_PG_INSERT_NODES = text(
    "INSERT INTO tree_nodes (level, idx, hash) SELECT * FROM unnest("
    "CAST(:level AS smallint[]), CAST(:idx AS bigint[]), CAST(:hash AS bytea[]))"
)


async def insert_rows(
    session: AsyncSession, kept: list[PreparedEvent], first_seq: int, received_at: datetime,
    leaves: list[bytes], nodes: list[tuple[int, int, bytes]],
) -> None:
    """Insert the events numbered ``first_seq, first_seq + 1, ...`` and the new tree nodes.

    PostgreSQL reports a stored ``event_id`` as asyncpg's ``UniqueViolationError``
    (COPY runs on the driver connection); SQLite as SQLAlchemy's ``IntegrityError``.
    """
    if session.get_bind().dialect.name != "postgresql":
        rows = [event_row(p.columns, first_seq + i, received_at, h)
                for i, (p, h) in enumerate(zip(kept, leaves, strict=True))]
        await session.execute(insert(events), rows)
        if nodes:
            await session.execute(
                insert(tree_nodes), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes]
            )
        return
    records = [(first_seq + i, *p.columns[:2], received_at, *p.columns[2:], h)
               for i, (p, h) in enumerate(zip(kept, leaves, strict=True))]
    connection = await (await session.connection()).get_raw_connection()
    driver: Any = connection.driver_connection  # asyncpg.Connection, in the session's transaction
    await driver.copy_records_to_table("events", records=records, columns=_EVENT_COLUMNS)
    if nodes:
        await session.execute(
            _PG_INSERT_NODES,
            {"level": [n[0] for n in nodes], "idx": [n[1] for n in nodes], "hash": [n[2] for n in nodes]},
        )


def event_row(columns: Columns, seq: int, received_at: datetime, h: bytes) -> dict[str, Any]:
    """The ``events`` row of a prepared event (SQLAlchemy insert)."""
    return {
        "seq": seq, "event_id": columns[0], "occurred_at": columns[1], "received_at": received_at,
        "service": columns[2], "action": columns[3], "actor_sub": columns[4], "actor_org": columns[5],
        "actor_role": columns[6], "subject_type": columns[7], "subject_id": columns[8],
        "outcome": columns[9], "request_id": columns[10], "details": json.loads(columns[11]),
        "leaf_hash": h,
    }


def _json_time(value: datetime) -> str:
    return str(_datetime_json.dump_python(value, mode="json"))


def row_to_stored_json(row: Row[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as ``StoredEvent.model_dump(mode="json")`` would give it."""
    r = row._mapping if isinstance(row, Row) else row
    return {
        "event_id": r["event_id"],
        "occurred_at": _json_time(r["occurred_at"]),
        "service": r["service"],
        "action": r["action"],
        "actor": {"sub": r["actor_sub"], "org": r["actor_org"], "role": r["actor_role"]},
        "subject": {"type": r["subject_type"], "id": r["subject_id"]},
        "outcome": r["outcome"],
        "request_id": r["request_id"],
        "details": r["details"],
        "seq": int(r["seq"]),
        "received_at": _json_time(r["received_at"]),
    }
