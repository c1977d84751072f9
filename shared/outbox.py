"""Transactional outbox: write messages with the change, deliver them later.

Producers call :func:`enqueue` (or :func:`record_event` for audit events)
with the request's session, so the message commits or rolls back with the
change itself. An :class:`OutboxRelay`, started by the app's relay registry
(``shared.relays``: where a service declares its relays), claims
pending rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several replicas can
relay at once without sending a row twice at the same time), hands them to a
deliverer, and marks them delivered; failures back off exponentially. A
receiver that is down delays messages; it never loses them. Receivers
deduplicate on ``message_id``, so a crash between delivery and marking is
harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import BigInteger, ColumnElement, MetaData, any_, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Principal
from shared.db import RELAY_WAKERS, Database, after_commit, relay_wakers, utcnow
from shared.events import Actor, AuditEvent, Outcome, new_event
from shared.hot_reads import HotQuery, fail_waiters
from shared.logging import request_id_var
from shared.outbox_model import outbox_table
from shared.periodic import Periodic
from shared.tracing import current_carrier

logger = logging.getLogger("sluice.outbox")

# DML only needs the table's name and columns; every service's outbox has the same shape.
outbox = outbox_table(MetaData())

AUDIT_EVENT = "audit_event"


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    kind: str
    message_id: str
    payload: dict[str, Any]
    attempts: int
    #: W3C trace headers stored with the row (None: written outside a traced span).
    trace: dict[str, str] | None = None


async def enqueue(
    session: AsyncSession, *, kind: str, destination: str, message_id: str, payload: dict[str, Any]
) -> None:
    """Add a message in the caller's transaction, with the current trace context; the
    destination's relay is woken once that transaction commits (never if it rolls back)."""
    now = utcnow()
    await session.execute(
        insert(outbox).values(
            kind=kind,
            destination=destination,
            message_id=message_id,
            payload=payload,
            created_at=now,
            available_at=now,
            attempts=0,
            trace_context=current_carrier(),
        )
    )
    wakers = relay_wakers(session)
    if wakers is not None:
        after_commit(session, lambda: wakers.wake(destination), key=(RELAY_WAKERS, destination))


async def enqueue_events(session: AsyncSession, events: Sequence[AuditEvent]) -> None:
    """Several audit events in the caller's transaction, as one multi-row ``INSERT`` (each row
    as :func:`record_event` writes it): a follow-up that moves a batch of rows at once (orders'
    fulfilment) writes one event per row without a round trip each. The audit relay is woken
    once the transaction commits."""
    if not events:
        return
    now, carrier = utcnow(), current_carrier()
    await session.execute(insert(outbox), [
        {"kind": AUDIT_EVENT, "destination": "audit", "message_id": str(event.event_id),
         "payload": event.model_dump(mode="json"), "created_at": now, "available_at": now,
         "attempts": 0, "trace_context": carrier}
        for event in events])
    wakers = relay_wakers(session)
    if wakers is not None:
        after_commit(session, lambda: wakers.wake("audit"), key=(RELAY_WAKERS, "audit"))


HTTP_COMMAND = "http_command"


async def enqueue_command(
    session: AsyncSession,
    *,
    destination: str,
    message_id: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> None:
    """Queue an HTTP call ``method path`` (JSON ``body``) to another service, in
    the caller's transaction; ``shared.command_relay`` delivers it."""
    await enqueue(
        session,
        kind=HTTP_COMMAND,
        destination=destination,
        message_id=message_id,
        payload={"method": method, "path": path, "body": body or {}},
    )


def actor_of(principal: Principal | None, role: str | None = None) -> Actor:
    if principal is None:
        return Actor()
    acting_role = role or (sorted(principal.roles)[0] if principal.roles else None)
    return Actor(sub=principal.subject, org=principal.org_id, role=acting_role)


async def record_event(
    target: AsyncSession | Database,
    *,
    service: str,
    action: str,
    subject_type: str,
    subject_id: str,
    actor: Actor | Principal | None = None,
    outcome: Outcome = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write an audit event to the outbox. Given a session, in the caller's transaction (the
    relay is woken once it commits). Given the :class:`Database`, for a request whose only
    write is this event: the row is an autocommit ``INSERT`` (a prepared statement on
    PostgreSQL, shared/hot_reads.py) instead of a transaction — one round trip instead of
    pre-ping, BEGIN, INSERT and COMMIT — shared with the other requests writing at the same
    moment (:class:`_GroupWriter`). The same row, the same payload; it is committed when this
    returns."""
    event = new_event(
        service=service, action=action, subject_type=subject_type, subject_id=subject_id,
        actor=actor if isinstance(actor, Actor) else actor_of(actor), outcome=outcome,
        request_id=request_id_var.get(), details=details,
    )
    if isinstance(target, Database):
        await _write_now(target, event)
    else:
        await enqueue(target, kind=AUDIT_EVENT, destination="audit", message_id=str(event.event_id),
                      payload=event.model_dump(mode="json"))
    return event


#: How long the autocommit events of record_event may wait for the relay (less than the
#: relays' 0.5 s poll): at hundreds of events a second they are delivered in batches, not
#: one relay run per event.
WAKE_COALESCE_SECONDS = 0.2

_INSERT_NOW = HotQuery(insert(outbox).values(
    kind=bindparam("kind"), destination=bindparam("destination"),
    message_id=bindparam("message_id"), payload=bindparam("payload"),
    created_at=bindparam("created_at"), available_at=bindparam("available_at"),
    attempts=bindparam("attempts"), trace_context=bindparam("trace_context"),
))


async def _write_now(db: Database, event: AuditEvent) -> None:
    """:func:`record_event`'s autocommit write (see there)."""
    now = utcnow()
    carrier = current_carrier()
    pg = db.hot.postgres  # asyncpg takes JSON as text; SQLAlchemy serialises it itself
    await _group_writer(db).write({
        "kind": AUDIT_EVENT, "destination": "audit", "message_id": str(event.event_id),
        "payload": event.model_dump_json() if pg else event.model_dump(mode="json"),
        "created_at": now, "available_at": now, "attempts": 0,
        "trace_context": json.dumps(carrier) if pg and carrier is not None else carrier,
    })


class _GroupWriter:
    """Group commit for :func:`record_event` given the Database: the rows of every request that reaches it
    while the previous write is in flight go to the database together, one round trip and one
    commit (``HotQuery.execute_many``, atomic), instead of one each. Each caller returns once
    its own row is committed, or raises the error that kept it out, as with a single insert."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._rows: list[dict[str, Any]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, row: dict[str, Any]) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rows.append(row)
        self._waiters.append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="outbox-group-writer")
        await waiter

    async def _drain(self) -> None:
        while self._rows:
            rows, waiters = self._rows, self._waiters
            self._rows, self._waiters = [], []
            try:
                await _INSERT_NOW.execute_many(self.db.hot, self.db.engine, rows)
            except BaseException as exc:
                fail_waiters(waiters, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for waiter in waiters:
                if not waiter.done():  # a caller that was cancelled meanwhile
                    waiter.set_result(None)
            # Committed: wake the relay, as enqueue's after-commit hook does, but once per
            # WAKE_COALESCE_SECONDS for all the events written meanwhile.
            self.db.relay_wakers.wake_soon("audit", WAKE_COALESCE_SECONDS)


_GROUP_WRITERS: weakref.WeakKeyDictionary[Database, _GroupWriter] = weakref.WeakKeyDictionary()


def _group_writer(db: Database) -> _GroupWriter:
    writer = _GROUP_WRITERS.get(db)
    if writer is None:
        writer = _GROUP_WRITERS[db] = _GroupWriter(db)
    return writer


Deliverer = Callable[[Sequence[OutboxMessage]], Awaitable[None]]


class DeliveryRefused(RuntimeError):
    """The receiver did not take a message; ``permanent`` when retrying cannot help.
    ``message``: the one message refused, when the deliverer sends one at a time in order
    (then the relay dead-letters it and counts those before it as delivered)."""

    def __init__(self, what: str, resp: httpx.Response, message: OutboxMessage | None = None) -> None:
        self.status = resp.status_code
        self.permanent = is_permanent_refusal(resp.status_code)
        self.message = message
        super().__init__(f"{what} answered {resp.status_code}: {resp.text[:300]}")


def is_permanent_refusal(status: int) -> bool:
    """A 4xx other than 401 (the token: refreshed and retried), 408 and 429 (later)."""
    return 400 <= status < 500 and status not in (401, 408, 429)


def check_delivered(resp: httpx.Response, what: str, message: OutboxMessage | None = None) -> None:
    """The one delivery policy for every outbox deliverer: 2xx, and 409 (the receiver has it
    already, or its state makes it moot: receivers are idempotent), are delivered; anything
    else raises :class:`DeliveryRefused`, and the relay retries with backoff (401: after one
    fresh token, see ``ServiceTokenAuth``). A permanent refusal (:func:`is_permanent_refusal`)
    of a ``message`` sent on its own is dead-lettered (``outbox.dead_at``: an operator sees it
    on /metrics and GET /v1/outbox/dead-letters and can send it again); a run of several sent
    together is sent again one at a time by ``shared.relays.HttpDelivery``, so only the refused
    message is dead-lettered (a refusal with no ``message`` is retried at the longest backoff)."""
    if resp.is_success or resp.status_code == 409:
        return
    raise DeliveryRefused(what, resp, message)


class DeliveryStopped(Exception):
    """Raised (``from`` the failure) by a deliverer that sends in id order and stopped at ``at``:
    the messages before it were delivered, ``at`` and those after it were not. The relay marks
    the ones before as delivered and retries (or, for a permanent refusal of ``at`` itself,
    dead-letters) from ``at`` on, so a delivered message is not sent again."""

    def __init__(self, at: OutboxMessage) -> None:
        self.at = at
        super().__init__(f"delivery stopped at {at.kind} message {at.message_id}")


def _stopped_at(exc: Exception) -> tuple[OutboxMessage | None, Exception]:
    """Where a failed delivery stopped (None: unknown, retry the whole batch), and why."""
    if isinstance(exc, DeliveryStopped) and isinstance(exc.__cause__, Exception):
        return exc.at, exc.__cause__
    if isinstance(exc, DeliveryRefused) and exc.permanent and exc.message is not None:
        return exc.message, exc
    return None, exc


#: The columns a relay reads of the rows it claims (an OutboxMessage's), not the whole row:
#: the four timestamps and the last error are decoded per row for nothing otherwise.
_CLAIMED = (outbox.c.id, outbox.c.kind, outbox.c.message_id, outbox.c.payload, outbox.c.attempts,
            outbox.c.trace_context)


def _ids_in(session: AsyncSession, ids: list[int]) -> ColumnElement[bool]:
    """``outbox.id IN ids``: on PostgreSQL one array parameter (``= ANY($1)``), so a batch of
    hundreds is one bound value, not hundreds rendered into the statement on every run (and a
    new prepared statement for every batch length); on SQLite the plain ``IN``."""
    if session.get_bind().dialect.name == "postgresql":
        return outbox.c.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
    return outbox.c.id.in_(ids)


class OutboxRelay:
    """Delivers one destination's pending messages in batches, in id order."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        destination: str,
        deliver: Deliverer,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        base_backoff: float = 0.5,
        max_backoff: float = 60.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.destination = destination
        self.deliver = deliver
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._loop = Periodic(f"outbox relay to {destination}", self._step, poll_interval)

    def wake(self) -> None:
        """Deliver soon (after a commit that enqueued something: see ``enqueue``)."""
        self._loop.wake()

    def backoff(self, attempts: int) -> float:
        delay = min(self.max_backoff, self.base_backoff * 2.0 ** max(0, attempts - 1))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto

    async def run_once(self) -> int:
        """Claim and deliver one batch; return how many were delivered."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                select(*_CLAIMED)
                .where(
                    outbox.c.destination == self.destination,
                    outbox.c.delivered_at.is_(None),
                    outbox.c.dead_at.is_(None),
                    outbox.c.available_at <= utcnow(),
                )
                .order_by(outbox.c.id)
                .limit(self.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await session.execute(stmt)).mappings().all()
            if not rows:
                return 0
            messages = [
                OutboxMessage(r["id"], r["kind"], r["message_id"], r["payload"], r["attempts"],
                              r["trace_context"])
                for r in rows
            ]
            ids = [m.id for m in messages]
            try:
                await self.deliver(messages)
            except Exception as exc:
                at, cause = _stopped_at(exc)
                if at is None or at.id not in ids:
                    return await self._retry(session, messages, cause)
                done = ids.index(at.id)  # those before it were delivered
                if done:
                    await session.execute(update(outbox).where(_ids_in(session, ids[:done]))
                                          .values(delivered_at=utcnow()))
                if isinstance(cause, DeliveryRefused) and cause.permanent \
                        and cause.message is not None and cause.message.id == at.id:
                    await self._dead_letter(session, at, cause)
                else:
                    await self._retry(session, messages[done:], cause)
                return done
            await session.execute(
                update(outbox).where(_ids_in(session, ids)).values(delivered_at=utcnow())
            )
            return len(messages)

    async def _dead_letter(self, session: AsyncSession, message: OutboxMessage, exc: Exception) -> None:
        logger.error("%s message %s to %s refused for good, dead-lettered (an operator can send it "
                     "again: POST /v1/outbox/dead-letters/%d/retry): %s", message.kind,
                     message.message_id, self.destination, message.id, exc)
        await session.execute(update(outbox).where(outbox.c.id == message.id).values(
            attempts=outbox.c.attempts + 1, last_error=str(exc)[:2000], dead_at=utcnow()))

    async def _retry(self, session: AsyncSession, messages: Sequence[OutboxMessage], exc: Exception) -> int:
        ids = [m.id for m in messages]
        attempts = max(m.attempts for m in messages) + 1
        permanent = isinstance(exc, DeliveryRefused) and exc.permanent
        delay = self.max_backoff if permanent else self.backoff(attempts)
        logger.log(
            logging.ERROR if permanent else logging.WARNING,
            "could not deliver %d %s message(s) to %s (attempt %d): %s; retrying in %.1fs",
            len(messages), messages[0].kind, self.destination, attempts, exc, delay,
        )
        await session.execute(
            update(outbox)
            .where(_ids_in(session, ids))
            .values(
                attempts=outbox.c.attempts + 1,
                last_error=str(exc)[:2000],
                available_at=utcnow() + timedelta(seconds=delay),
            )
        )
        return 0

    def start(self) -> None:
        """Run in the background until :meth:`stop` (``shared.relays.RelayRegistry`` does both,
        and registers :meth:`wake` for after-commit wake-ups)."""
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _step(self) -> bool:
        """One batch; True when it was full (more may be waiting: go again at once)."""
        return await self.run_once() >= self.batch_size
