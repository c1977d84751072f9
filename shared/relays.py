"""Every service's outbox relays: declared once, started and stopped by the app, woken after commits.

A service lists its relays in ``create_service_app(relays=[...])``: a :class:`Relay` says which
outbox destination it drains and how its messages are delivered. The app's lifespan builds one
:class:`RelayRegistry` from that list (after the service's own lifespan steps, so a deliverer can
use what they built) and stops every relay before those steps end. The registry is the one place
that knows the app's relays: it starts them, registers their wake-ups with the database (so a
commit that enqueued for a destination wakes its relay, ``shared.db.after_commit``), is what the
operator endpoints wake after a retry and what ``/metrics`` lists, and it is where the service's
token is checked once: without a client secret it warns once, naming the setting, and those
relays wait (their messages stay in the outbox).

Most relays call another service over HTTP: :class:`HttpDelivery` is that deliverer, written
once — this service's token as ``httpx`` auth (a fresh one on 401), the trace headers, one
status policy (``shared.outbox.check_delivered``), and an optional ``on_delivered`` hook for a
service's follow-up (orders marks granted orders fulfilled). A service-specific relay that is
not HTTP (orders' Stripe refunds) gives its own deliverer factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from shared.db import Database
from shared.outbox import (
    Deliverer,
    DeliveryRefused,
    DeliveryStopped,
    OutboxMessage,
    OutboxRelay,
    check_delivered,
)
from shared.service_auth import ServiceTokenAuth, TokenSource
from shared.settings import ServiceSettings
from shared.tracing import delivery

logger = logging.getLogger("sluice.outbox")


@dataclass(frozen=True)
class RelayContext:
    """What a deliverer is built from when the app starts (after the service's lifespan steps)."""

    app: FastAPI
    settings: ServiceSettings
    http: httpx.AsyncClient
    #: This service's own token; None when no client secret is configured.
    token: TokenSource | None


@dataclass(frozen=True)
class Relay:
    """One destination a service relays its outbox to.

    ``deliverer`` builds the deliverer at start (an :class:`HttpDelivery` for calls to another
    service). ``needs_token``: the relay sends this service's token, so it waits (and the
    registry warns) while no client secret is configured. Batch size, idle wait and longest
    backoff default to the ``OUTBOX_*`` settings; ``poll`` reads another setting."""

    destination: str
    deliverer: Callable[[RelayContext], Deliverer]
    #: What waits in the outbox, in the no-secret warning ("audit events").
    what: str
    needs_token: bool = True
    batch_size: int | None = None
    max_backoff: float | None = None
    poll: Callable[[Any], float] | None = None
    #: Seconds a commit's wake-up may wait, once for all the commits meanwhile (0: at once): a
    #: relay woken by every order's commit keeps up in batches of a few messages, each paying
    #: its claim, mark and follow-up statements; waiting a little makes the batches larger.
    wake_delay: float = 0.0


# --- the one HTTP deliverer ---------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """The request that delivers a run of messages (``path`` is below the receiver's base URL).

    ``split``: the request is a batch endpoint that answers each message on its own; it turns
    the request's 2xx answer into one answer per message of the run, in order (raising if the
    answer is not one). Each answer then follows ``check_delivered`` as if the message had been
    sent alone (see :class:`HttpDelivery`)."""

    method: str
    path: str
    json: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    split: Callable[[httpx.Response], Sequence[httpx.Response]] | None = None


@dataclass(frozen=True)
class Delivered:
    """A message the receiver took (2xx or 409), with its answer (for ``on_delivered``)."""

    message: OutboxMessage
    response: httpx.Response


OnDelivered = Callable[[Sequence[Delivered]], Awaitable[None]]


def one_each(messages: Sequence[OutboxMessage]) -> list[Sequence[OutboxMessage]]:
    """One request per message, in order (the default)."""
    return [[m] for m in messages]


@dataclass(frozen=True)
class HttpDelivery:
    """How a relay's messages reach another service over HTTP.

    ``request`` turns a run of messages into one request (None: nothing to send, the run counts
    as done); ``runs`` splits a claimed batch into runs, in id order (the audit relay sends one
    request per trace; a message left out of every run counts as done, e.g. a report superseded
    by a newer one in the same batch). Answers follow ``check_delivered``; a status in
    ``dropped`` is logged and the run counts as done (for copies a newer message replaces).

    A permanent refusal of a run of several messages cannot say which one the receiver refused:
    the run is sent again one message at a time, so only the refused one is dead-lettered and the
    others are delivered (receivers deduplicate on ``message_id``).

    A failure stops the batch at the run that failed (``DeliveryStopped``): the messages before
    it are marked delivered and not sent again; that run and the rest are retried.

    A run sent to a batch endpoint (``Outgoing.split``) is answered per message: the messages
    up to the first one not taken are delivered; a permanent refusal of that one dead-letters
    it alone, anything else retries from it (``DeliveryStopped`` at it). The messages after it
    were answered too but count as not delivered: they are sent again (the receiver answers a
    repeat), so one stop point is all the relay needs to know.

    ``on_delivered(ctx)`` builds the service's follow-up: it is awaited once per claimed batch
    with every message the receiver took (also when a later run failed), and never with a
    refused one. It is shielded from cancellation, so a shutdown does not cut it in half. A hook
    that raises fails the whole batch, which is then sent again (receivers deduplicate; the
    hook should be idempotent for that case)."""

    receiver: str
    base_url_setting: str
    request: Callable[[Sequence[OutboxMessage]], Outgoing | None]
    runs: Callable[[Sequence[OutboxMessage]], Iterable[Sequence[OutboxMessage]]] = one_each
    dropped: frozenset[int] = frozenset()
    on_delivered: Callable[[RelayContext], OnDelivered] | None = None
    #: The client to send with (default: the app's); orders sends through its outbound client.
    client: Callable[[FastAPI], httpx.AsyncClient] | None = None

    def __call__(self, ctx: RelayContext) -> Deliverer:
        if ctx.token is None:  # the registry starts token relays only with a token
            raise RuntimeError(f"the relay to {self.receiver} needs this service's token")
        http = self.client(ctx.app) if self.client is not None else ctx.http
        hook = self.on_delivered(ctx) if self.on_delivered is not None else None
        return self.deliverer(http, getattr(ctx.settings, self.base_url_setting), ctx.token, hook)

    def deliverer(self, http: httpx.AsyncClient, base_url: str, token: TokenSource,
                  on_delivered: OnDelivered | None = None) -> Deliverer:
        """The deliverer itself, for a given client, base URL and token (tests use it directly)."""
        return _HttpDeliverer(self, http, base_url.rstrip("/"), ServiceTokenAuth(token), on_delivered)


class _HttpDeliverer:
    def __init__(self, spec: HttpDelivery, http: httpx.AsyncClient, base: str, auth: httpx.Auth,
                 on_delivered: OnDelivered | None) -> None:
        self.spec, self.http, self.base, self.auth, self.on_delivered = spec, http, base, auth, on_delivered

    async def __call__(self, messages: Sequence[OutboxMessage]) -> None:
        delivered: list[Delivered] = []
        try:
            for run in self.spec.runs(messages):
                await self._send(run, delivered)
        finally:
            if delivered and self.on_delivered is not None:
                await asyncio.shield(self.on_delivered(delivered))

    async def _send(self, run: Sequence[OutboxMessage], delivered: list[Delivered]) -> None:
        """Send one run; on failure raise ``DeliveryStopped`` at the run's first message (or, in
        a run sent again one at a time, at the message that failed)."""
        outgoing = self.spec.request(run)
        if outgoing is None:
            return
        what = f"{self.spec.receiver} ({outgoing.method} {outgoing.path})"
        answers: Sequence[httpx.Response] | None = None
        try:
            with delivery(run, self.spec.receiver) as trace_headers:
                resp = await self.http.request(outgoing.method, self.base + outgoing.path,
                                               json=outgoing.json, auth=self.auth,
                                               headers={**outgoing.headers, **trace_headers})
                if resp.status_code not in self.spec.dropped:
                    check_delivered(resp, what, run[0] if len(run) == 1 else None)
                    if outgoing.split is not None:
                        answers = _split(outgoing.split, resp, len(run))
        except DeliveryRefused as exc:
            if not exc.permanent or len(run) == 1:
                raise DeliveryStopped(run[0]) from exc
            logger.warning("%s refused a run of %d messages for good (%d); sending them one at a "
                           "time so only the refused one is dead-lettered", what, len(run), exc.status)
        except Exception as exc:
            raise DeliveryStopped(run[0]) from exc
        else:
            if resp.status_code in self.spec.dropped:
                logger.warning("%s refused %d message(s) (%d), dropped (a newer one follows): %s",
                               what, len(run), resp.status_code, resp.text[:300])
            elif answers is not None:
                self._take_each(run, answers, what, delivered)
            else:
                delivered.extend(Delivered(m, resp) for m in run)
            return
        for message in run:
            await self._send([message], delivered)

    def _take_each(self, run: Sequence[OutboxMessage], answers: Sequence[httpx.Response], what: str,
                   delivered: list[Delivered]) -> None:
        """A batch endpoint's answers, one per message: delivered up to the first one not taken,
        which stops the batch there (see :class:`HttpDelivery`)."""
        for message, answer in zip(run, answers, strict=True):
            if answer.status_code in self.spec.dropped:
                logger.warning("%s refused %s (%d), dropped (a newer one follows): %s", what,
                               message.message_id, answer.status_code, answer.text[:300])
                continue
            try:
                check_delivered(answer, what, message)
            except DeliveryRefused as exc:
                raise DeliveryStopped(message) from exc
            delivered.append(Delivered(message, answer))


def _split(split: Callable[[httpx.Response], Sequence[httpx.Response]], resp: httpx.Response,
           expected: int) -> Sequence[httpx.Response]:
    answers = split(resp)
    if len(answers) != expected:
        raise ValueError(f"a batch of {expected} messages was answered with {len(answers)} results")
    return answers


# --- the registry -------------------------------------------------------------------------


def coalesced(wake: Callable[[], None], delay: float) -> Callable[[], None]:
    """``wake`` called ``delay`` seconds after the first call, once for all the calls meanwhile."""
    pending = False

    def fire() -> None:
        nonlocal pending
        pending = False
        wake()

    def soon() -> None:
        nonlocal pending
        if not pending:
            pending = True
            asyncio.get_running_loop().call_later(delay, fire)

    return soon



class RelayRegistry:
    """The relays of one running app (``shared.runtime.Runtime.relays``, for requests
    ``RelaysDep``; see the module docstring)."""

    def __init__(self, settings: ServiceSettings, db: Database, relays: Sequence[Relay]) -> None:
        self.settings = settings
        self.db = db
        self.declared: dict[str, Relay] = {}
        for relay in relays:
            if relay.destination in self.declared:
                raise ValueError(f"two relays for the outbox destination {relay.destination!r}")
            self.declared[relay.destination] = relay
        self._running: dict[str, OutboxRelay] = {}

    def get(self, destination: str) -> OutboxRelay | None:
        """The running relay of ``destination`` (None: not declared, or waiting for a secret)."""
        return self._running.get(destination)

    @property
    def waiting(self) -> list[str]:
        """Destinations declared but not relayed (no client secret)."""
        return [d for d in self.declared if d not in self._running]

    def wake(self, destination: str) -> None:
        relay = self._running.get(destination)
        if relay is not None:
            relay.wake()

    def _build(self, relay: Relay, ctx: RelayContext) -> OutboxRelay:
        s = self.settings
        return OutboxRelay(
            self.db.sessionmaker, relay.destination, relay.deliverer(ctx),
            batch_size=relay.batch_size or s.outbox_batch_size,
            poll_interval=relay.poll(s) if relay.poll is not None else s.outbox_poll_seconds,
            max_backoff=relay.max_backoff or s.outbox_max_backoff_seconds,
        )

    @contextlib.asynccontextmanager
    async def running(self, app: FastAPI, http: httpx.AsyncClient,
                      token: TokenSource | None) -> AsyncIterator[RelayRegistry]:
        """Start every declared relay (those needing a token only with one), register their
        after-commit wake-ups, and stop them all when the block ends."""
        ctx = RelayContext(app, self.settings, http, token)
        waiting = [r for r in self.declared.values() if r.needs_token and token is None]
        if waiting:
            logger.warning(
                "no service client secret (SLUICE_%s_SERVICE_CLIENT_SECRET): %s stay in the outbox "
                "until one is configured", self.settings.service_name.upper(),
                ", ".join(f"{r.what} (to {r.destination})" for r in waiting))
        unregister: list[Callable[[], None]] = []
        try:
            for relay in self.declared.values():
                if relay in waiting:
                    continue
                running = self._running[relay.destination] = self._build(relay, ctx)
                wake = coalesced(running.wake, relay.wake_delay) if relay.wake_delay else running.wake
                unregister.append(self.db.relay_wakers.register(relay.destination, wake))
                running.start()
            yield self
        finally:
            for remove in unregister:
                remove()
            for running in self._running.values():
                await running.stop()
            self._running.clear()
