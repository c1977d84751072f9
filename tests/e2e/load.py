"""A bounded load on a running marketplace, every outcome recorded.

Threads play the parties: buyers ordering and paying, buyers querying the data service with
data-access tokens, a service appending audit events, buyers searching the catalog. Each call's
outcome goes into :class:`Outcomes` by kind and HTTP status (or ``connection``/``timeout``), so a
test can print the load it held and the errors it saw, and knows exactly what was
*acknowledged* (an order created and paid, an event batch stored), which is what the
properties afterwards are about. A failed call is retried the way a careful client would:
the same Idempotency-Key for an order, the same event ids for an audit batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.events import Actor, new_event

JSON = dict[str, Any]
#: Answers after which a careful client tries the same request again.
RETRYABLE = {502, 503, 504, "connection", "timeout"}


class Outcomes:
    """Counts of (kind, status), thread-safe; the figures a test prints."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, int | str]] = Counter()
        self.started = time.monotonic()
        self.stopped: float | None = None

    def record(self, kind: str, status: int | str) -> None:
        with self.lock:
            self.counts[(kind, status)] += 1

    def call(self, kind: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
        """Send, record the status; None when no answer came (connection failed or timed out)."""
        try:
            resp = send()
        except httpx.TimeoutException:
            self.record(kind, "timeout")
            return None
        except httpx.TransportError:
            self.record(kind, "connection")
            return None
        self.record(kind, resp.status_code)
        return resp

    def errors(self) -> Counter[int | str]:
        """Every answer that was not 2xx, by status, over all kinds."""
        out: Counter[int | str] = Counter()
        for (_, status), n in self.counts.items():
            if not (isinstance(status, int) and 200 <= status < 300):
                out[status] += n
        return out

    def report(self) -> str:
        seconds = (self.stopped or time.monotonic()) - self.started
        kinds = sorted({k for k, _ in self.counts})
        lines = [f"load held for {seconds:.0f} s:"]
        for kind in kinds:
            total = sum(n for (k, _), n in self.counts.items() if k == kind)
            ok = sum(n for (k, s), n in self.counts.items()
                     if k == kind and isinstance(s, int) and 200 <= s < 300)
            bad = {s: n for (k, s), n in self.counts.items()
                   if k == kind and not (isinstance(s, int) and 200 <= s < 300)}
            lines.append(f"  {kind:<16} {total:>6} requests {total / seconds:>6.1f}/s  {ok:>6} ok  "
                         f"other: {dict(sorted(bad.items(), key=str)) or '-'}")
        lines.append(f"  errors by status: {dict(sorted(self.errors().items(), key=str)) or 'none'}")
        return "\n".join(lines)


class Tokens:
    """A client-credentials token, fetched again when it nears its end or is refused."""

    def __init__(self, http: httpx.Client, access_url: str, client_id: str, secret: str,
                 outcomes: Outcomes) -> None:
        self.http, self.url, self.auth, self.outcomes = http, f"{access_url}/oauth/token", (client_id, secret), outcomes
        self.token: str | None = None
        self.expires = 0.0

    def bearer(self) -> dict[str, str]:
        while self.token is None or time.monotonic() > self.expires:
            resp = self.outcomes.call("token", lambda: self.http.post(
                self.url, data={"grant_type": "client_credentials"}, auth=self.auth))
            if resp is not None and resp.status_code == 200:
                body = resp.json()
                self.token = str(body["access_token"])
                self.expires = time.monotonic() + float(body["expires_in"]) / 2
            else:
                time.sleep(0.3)
        return {"Authorization": f"Bearer {self.token}"}

    def refused(self) -> None:
        self.token = None


def with_retries(outcomes: Outcomes, kind: str, send: Callable[[], httpx.Response],
                 tokens: Tokens | None = None, attempts: int = 8) -> httpx.Response | None:
    """Send until a final answer, at most ``attempts`` times. Not final: no answer, 502/503/504,
    and a 409 with ``Retry-After`` (order-in-progress); a 401 gets a new token once."""
    for attempt in range(attempts):
        resp = outcomes.call(kind, send)
        status: int | str = "connection" if resp is None else resp.status_code
        if status == 401 and tokens is not None and attempt == 0:
            tokens.refused()
            continue
        if status not in RETRYABLE and not (status in (409, 503) and resp is not None
                                            and "retry-after" in resp.headers):
            return resp
        time.sleep(min(2.0, 0.2 * 2 ** attempt))
    return None


@dataclass
class Ledger:
    """What the load was told: acknowledged orders and payments, stored audit events."""

    orders_created: set[str] = field(default_factory=set)
    orders_paid: set[str] = field(default_factory=set)  # /pay answered 200
    events_stored: set[str] = field(default_factory=set)  # the batch was acknowledged
    events_unknown: set[str] = field(default_factory=set)  # sent, never acknowledged
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Party:
    client_id: str
    secret: str


class Load:
    """The threads, started together and stopped together."""

    def __init__(self, urls: dict[str, str], outcomes: Outcomes, ledger: Ledger) -> None:
        self.urls, self.outcomes, self.ledger = urls, outcomes, ledger
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.failures: list[str] = []

    def add(self, name: str, loop: Callable[[httpx.Client], None]) -> None:
        def run() -> None:
            with httpx.Client(timeout=30) as http:
                try:
                    while not self.stop.is_set():
                        loop(http)
                except Exception as exc:  # a bug in the load itself must fail the test
                    self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
        self.threads.append(threading.Thread(target=run, name=name, daemon=True))

    def start(self) -> None:
        self.outcomes.started = time.monotonic()
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        self.outcomes.stopped = time.monotonic()
        assert not [t.name for t in self.threads if t.is_alive()], "a load thread is stuck"
        assert not self.failures, self.failures

    # --- the parties ---------------------------------------------------------------------
    def purchases(self, buyer: Party, product: JSON) -> Callable[[httpx.Client], None]:
        """Quote, order (with an Idempotency-Key), pay with a test card."""
        plan = product["plans"][0]
        state: dict[str, Tokens] = {}

        def loop(http: httpx.Client) -> None:
            tokens = state.setdefault("t", Tokens(http, self.urls["access"], buyer.client_id, buyer.secret,
                                                  self.outcomes))
            orders = self.urls["orders"]
            quote = with_retries(self.outcomes, "quote", lambda: http.post(f"{orders}/v1/quotes", json={
                "product_id": product["id"], "version": product["version"], "plan_id": plan["id"]},
                headers=tokens.bearer()), tokens)
            if quote is None or quote.status_code != 201:
                return
            key = str(uuid.uuid4())
            order = with_retries(self.outcomes, "order", lambda: http.post(
                f"{orders}/v1/orders", json={"quote_id": quote.json()["id"], "purpose": "research"},
                headers={**tokens.bearer(), "Idempotency-Key": key}), tokens)
            if order is None or order.status_code != 201:
                return
            order_id = str(order.json()["id"])
            with self.ledger.lock:
                self.ledger.orders_created.add(order_id)
            paid = with_retries(self.outcomes, "pay", lambda: http.post(
                f"{orders}/v1/orders/{order_id}/pay", json={"payment_method": "pm_card_visa"},
                headers=tokens.bearer()), tokens)
            if paid is not None and paid.status_code == 409:  # "may be confirmed already": look
                paid = with_retries(self.outcomes, "order-read", lambda: http.get(
                    f"{orders}/v1/orders/{order_id}", headers=tokens.bearer()), tokens)
                if paid is not None and paid.json().get("status") not in ("paid", "fulfilled"):
                    return
            if paid is not None and paid.status_code == 200:
                with self.ledger.lock:
                    self.ledger.orders_paid.add(order_id)

        return loop

    def queries(self, buyer: Party, entitlement_id: str, query: JSON,
                kind: str = "query") -> Callable[[httpx.Client], None]:
        """A data-access token, then queries with it until it is refused."""
        state: dict[str, Any] = {}

        def loop(http: httpx.Client) -> None:
            tokens = state.setdefault("t", Tokens(http, self.urls["access"], buyer.client_id, buyer.secret,
                                                  self.outcomes))
            issued = with_retries(self.outcomes, "data-token", lambda: http.post(
                f"{self.urls['access']}/v1/entitlements/{entitlement_id}/tokens", headers=tokens.bearer()),
                tokens)
            if issued is None or issued.status_code != 201:
                time.sleep(0.5)  # used up (403/409): keep asking now and then
                return
            data_token = {"Authorization": f"Bearer {issued.json()['access_token']}"}
            for _ in range(20):
                if self.stop.is_set():
                    return
                resp = with_retries(self.outcomes, kind, lambda: http.post(
                    f"{self.urls['dataservice']}/v1/query", json=query, headers=data_token))
                if resp is None or resp.status_code != 200:
                    time.sleep(0.2)
                    return

        return loop

    def audit_appends(self, client_id: str, secret: str, service: str,
                      batch: int = 20) -> Callable[[httpx.Client], None]:
        """Batches of new events, as a service's relay sends them; a failed batch is sent again
        with the same event ids until acknowledged (or given up: then its fate is unknown)."""
        state: dict[str, Tokens] = {}

        def loop(http: httpx.Client) -> None:
            tokens = state.setdefault("t", Tokens(http, self.urls["access"], client_id, secret, self.outcomes))
            events = [new_event(service=service, action=f"{service}.load.appended", subject_type="load",
                                subject_id=f"load_{uuid.uuid4().hex[:12]}", actor=Actor(sub=client_id),
                                details={"n": i}).model_dump(mode="json") for i in range(batch)]
            ids = {str(e["event_id"]) for e in events}
            resp = with_retries(self.outcomes, "audit-append", lambda: http.post(
                f"{self.urls['audit']}/v1/events", json={"events": events}, headers=tokens.bearer()), tokens)
            with self.ledger.lock:
                if resp is not None and resp.status_code in (200, 201):
                    self.ledger.events_stored |= ids
                else:
                    self.ledger.events_unknown |= ids

        return loop

    def searches(self, buyer: Party) -> Callable[[httpx.Client], None]:
        state: dict[str, Tokens] = {}

        def loop(http: httpx.Client) -> None:
            tokens = state.setdefault("t", Tokens(http, self.urls["access"], buyer.client_id, buyer.secret,
                                                  self.outcomes))
            with_retries(self.outcomes, "search", lambda: http.get(
                f"{self.urls['catalog']}/v1/products", params={"q": "health visits"}, headers=tokens.bearer()),
                tokens)

        return loop
