"""Faults on real processes: services stopped, webhooks lost, processes killed with
SIGKILL mid-request, and at the exact moment one side has done the work and the other
has not heard. Each test fails if an audit event or an entitlement is lost or doubled:
it ends by comparing every service's outbox with the settled audit log. Every test
leaves the cluster whole again (stopped services restarted)."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.demo import product_specs
from tests.e2e.cluster import Cluster, free_port
from tests.e2e.conftest import started
from tests.e2e.databases import database_url, is_postgresql, rows, tables_locked, waiting_statements
from tests.e2e.interposer import Interposer
from tests.e2e.market import (
    AGGREGATE_QUERY,
    ENTITLEMENT_ACTIONS,
    ORDER_ACTIONS,
    QUERY_ACTIONS,
    Market,
    assert_each_once,
    settled_log,
    stripe_js_confirms,
    wait_until,
)

PRODUCERS = ("access", "catalog", "orders", "dataservice")


@dataclass
class Wiring:
    """The cluster, with interposers on the two calls whose answers matter most."""

    cluster: Cluster
    to_access: Interposer  # orders → access (entitlement grants)
    to_audit: Interposer  # every producer → audit (event batches)


@pytest.fixture(scope="module")
def wiring(tmp_path_factory: pytest.TempPathFactory, cluster_backend: str) -> Iterator[Wiring]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), backend=cluster_backend)
    w = Wiring(c, Interposer(c.urls["access"], "access").start(), Interposer(c.urls["audit"], "audit").start())
    # Orders reaches access through the interposer, but still expects tokens issued by access.
    c.extra_env.update({"SLUICE_ORDERS_ACCESS_URL": w.to_access.url,
                        "SLUICE_ORDERS_TOKEN_ISSUER": c.urls["access"],
                        "SLUICE_ORDERS_JWKS_URL": f"{c.urls['access']}/.well-known/jwks.json"})
    c.extra_env.update({f"SLUICE_{s.upper()}_AUDIT_URL": w.to_audit.url for s in PRODUCERS})
    try:
        with started(c):
            yield w
    finally:
        w.to_access.stop()
        w.to_audit.stop()


@pytest.fixture(scope="module")
def cluster(wiring: Wiring) -> Cluster:
    return wiring.cluster


@contextmanager
def stopped(cluster: Cluster, service: str) -> Iterator[None]:
    """``service`` is down inside the block and up again (healthy) after it, even on failure."""
    proc = cluster.procs[service]
    proc.stop()
    try:
        assert not is_up(proc.url), f"{service} still answers after being stopped"
        yield
    finally:
        proc.start()
        proc.wait_healthy()


def is_up(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def webhook_deliveries(cluster: Cluster) -> int:
    """Webhooks orders accepted so far (its access log survives restarts)."""
    log = cluster.procs["orders"].log.read_text(errors="replace")
    return sum(1 for line in log.splitlines() if "POST /v1/webhooks/stripe HTTP/1.1" in line and " 200" in line)


def test_audit_down_during_a_purchase_every_event_arrives_once_after_restart(
        market: Market, tmp_path: Path) -> None:
    assert market.verify_log(tmp_path / "checkpoint.txt") == 0  # pin the log as it was
    with stopped(market.cluster, "audit"):
        order = market.place_health_order()
        market.buyer.pay_order(order["id"], "pm_card_visa")
        market.wait_for_status(order["id"], "fulfilled")
        [ent] = market.entitlements_of(order["id"])
        token = market.buyer.issue_data_token(ent["id"])["access_token"]
        resp = httpx.post(f"{market.data_url}/v1/query", json=AGGREGATE_QUERY,
                          headers={"Authorization": f"Bearer {token}"}, timeout=20)
        assert resp.status_code == 200, resp.text
    expected = {order["id"]: ORDER_ACTIONS, ent["id"]: (*ENTITLEMENT_ACTIONS, *QUERY_ACTIONS)}
    market.wait_for_trail(expected, timeout=45)
    assert_each_once(settled_log(market), expected)
    # The log only grew while audit was down and back: consistent with the pinned checkpoint.
    assert market.verify_log(tmp_path / "checkpoint.txt") == 0


def test_access_down_when_the_payment_succeeds_grants_once_after_restart(market: Market) -> None:
    order = market.place_health_order()
    before = webhook_deliveries(market.cluster)
    with stopped(market.cluster, "access"):
        paid = market.buyer.pay_order(order["id"], "pm_card_visa")
        assert paid["status"] == "paid"
        # localstripe's webhook for the same payment arrives about 1 s later: a duplicate that
        # must change nothing; the grant waits in orders' outbox while access is down.
        wait_until(lambda: webhook_deliveries(market.cluster) > before, "the duplicate webhook", 10)
        still = market.buyer.get_order(order["id"])
        assert still["status"] == "paid" and still["entitlement_id"] is None
    fulfilled = market.wait_for_status(order["id"], "fulfilled", timeout=45)
    [ent] = market.entitlements_of(order["id"])
    assert fulfilled["entitlement_id"] == ent["id"] and ent["status"] == "active"
    expected = {order["id"]: ORDER_ACTIONS, ent["id"]: ENTITLEMENT_ACTIONS}
    market.wait_for_trail(expected)
    assert_each_once(settled_log(market), expected)
    # The buyer can use it: access issues a data token for the entitlement.
    assert market.buyer.issue_data_token(ent["id"])["access_token"]


def test_a_lost_webhook_is_repaired_by_the_reconciler(market: Market) -> None:
    cluster = market.cluster
    assert cluster.stripe is not None
    # Stripe cannot reach orders: its webhook points at a port nobody listens on.
    cluster.stripe.register_webhook(f"http://127.0.0.1:{free_port()}/v1/webhooks/stripe")
    try:
        order = market.place_health_order()
        # The buyer's browser confirms at Stripe directly (Stripe.js); orders is not told.
        intent = stripe_js_confirms(cluster.stripe.url, order["payment"]["payment_intent_id"])
        assert intent["status"] == "succeeded"
        fulfilled = market.wait_for_status(order["id"], "fulfilled", timeout=30)
    finally:
        cluster.stripe.register_webhook(cluster.webhook_url)
    [ent] = market.entitlements_of(order["id"])
    assert fulfilled["entitlement_id"] == ent["id"]
    expected = {order["id"]: ORDER_ACTIONS, ent["id"]: ENTITLEMENT_ACTIONS}
    market.wait_for_trail(expected)
    log = settled_log(market)
    assert_each_once(log, expected)
    paid = next(e for e in log if e["action"] == "orders.order.paid" and e["subject"]["id"] == order["id"])
    assert paid["details"]["by"] == "reconciler"


class Burst:
    """Writers creating products as fast as the catalog answers, each outcome recorded."""

    def __init__(self, url: str, token: str, spec: dict[str, Any], writers: int = 8) -> None:
        self.url, self.token, self.spec = url, token, spec
        self.acked: dict[str, str] = {}   # slug → product id: the catalog answered 201
        self.in_flight: set[str] = set()  # sent, but the connection died before an answer
        self.never_sent: set[str] = set()  # connection refused: the catalog never saw it
        self.unexpected: list[str] = []
        self.killed = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.write, args=(n,), daemon=True) for n in range(writers)]

    def write(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=15) as http:
            for i in range(10_000):
                slug = f"burst-{n}-{i}-{uuid.uuid4().hex[:6]}"
                try:
                    resp = http.post(self.url, json={**self.spec, "slug": slug}, headers=headers)
                except httpx.ConnectError:
                    with self.lock:
                        self.never_sent.add(slug)
                    if self.killed.is_set():
                        return
                    continue
                except httpx.HTTPError:
                    with self.lock:
                        self.in_flight.add(slug)
                    if self.killed.is_set():
                        return
                    continue
                with self.lock:
                    if resp.status_code == 201:
                        self.acked[slug] = str(resp.json()["id"])
                    else:
                        self.unexpected.append(f"{resp.status_code} {resp.text[:200]}")
                        return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a writer is stuck"


def test_catalog_killed_mid_burst_leaves_no_half_written_product(market: Market) -> None:
    """SIGKILL while product creations are in flight, with audit down so every event is
    still in the catalog's outbox: after restarts, each product the catalog acknowledged
    exists, whole, with exactly one `catalog.product.created` event, and nothing exists (no
    product, no event) for a creation whose transaction the kill rolled back."""
    cluster = market.cluster
    provider, org = market.party("provider", "Burst Data Co")
    spec, _ = product_specs(market.data_url, "burst")
    burst = Burst(f"{cluster.urls['catalog']}/v1/products", provider.bearer(), spec)
    with stopped(cluster, "audit"):
        burst.start()
        wait_until(lambda: len(burst.acked) >= 40 or burst.unexpected, "40 acknowledged creations", 30)
        cluster.procs["catalog"].kill()
        burst.killed.set()
        burst.join()
        assert not burst.unexpected, burst.unexpected
        assert burst.in_flight, "the kill hit no request in flight; the test proved nothing"
        cluster.procs["catalog"].start()
        cluster.procs["catalog"].wait_healthy()
    # What the catalog holds for this provider, after the crash.
    products = list(provider.pages(f"{cluster.urls['catalog']}/v1/products",
                                   {"status": "draft", "provider": org, "limit": 100, "facets": False}))
    stored = {p["slug"]: p["id"] for p in products}
    assert len(stored) == len(products), "a slug is stored twice"
    for slug, product_id in burst.acked.items():
        assert stored.get(slug) == product_id, f"acknowledged product {slug} ({product_id}) is gone"
    assert set(stored) <= set(burst.acked) | burst.in_flight, "a product nobody created exists"
    for product_id in stored.values():  # whole: the draft with every field, not a bare row
        full = provider.get_product(product_id)
        assert full["title"] == spec["title"] and full["plans"] and full["schema"], full
    # The outbox re-delivers every committed creation's event, exactly once; none for rollbacks.
    def created_events() -> list[dict[str, Any]] | None:
        events = list(market.regulator.pages(
            f"{cluster.urls['audit']}/v1/events",
            {"action": "catalog.product.created", "actor_org": org, "limit": 200}))
        return events if {e["subject"]["id"] for e in events} >= set(stored.values()) else None
    events = wait_until(created_events, "a created event for every stored product", timeout=60)
    counts = Counter(e["subject"]["id"] for e in events)
    assert counts == Counter(set(stored.values())), (
        f"events vs products: doubled {[i for i, n in counts.items() if n > 1]}, "
        f"orphans {set(counts) - set(stored.values())}")
    settled_log(market)
    print(f"burst: {len(burst.acked)} acknowledged, {len(burst.in_flight)} in flight at the kill "
          f"({len(set(stored) & burst.in_flight)} of them committed), {len(burst.never_sent)} refused")


def test_orders_killed_after_access_granted_but_before_it_heard_fulfils_once(
        market: Market, wiring: Wiring) -> None:
    """The worst moment for a grant: access has committed the entitlement, orders has not
    heard. The interposer lets the grant reach access, waits for access's answer, SIGKILLs
    orders and never relays it. After the restart orders sends the grant again: still
    exactly one entitlement, the one access answered before the crash."""
    cluster = market.cluster
    orders = cluster.procs["orders"]
    order = market.place_health_order()
    buyer_heard = threading.Event()

    def kill_orders() -> None:  # once the buyer's pay request has its answer
        buyer_heard.wait(15)
        orders.kill()

    wiring.to_access.arm(lambda method, path, body: method == "POST" and path == "/v1/entitlements"
                         and order["id"].encode() in body, kill_orders)
    try:
        assert market.buyer.pay_order(order["id"], "pm_card_visa")["status"] == "paid"
    finally:
        buyer_heard.set()
    assert wiring.to_access.fired.wait(30), "orders never sent the grant"
    granted = wiring.to_access.intercepted
    assert granted is not None and granted.status == 201, granted
    ent_id = json.loads(granted.answer)["id"]
    # The window: access holds the entitlement; orders died with the order still `paid`.
    assert [e["id"] for e in market.entitlements_of(order["id"])] == [ent_id]
    assert rows(database_url(cluster, "orders"), "SELECT status, entitlement_id FROM orders WHERE id = :id",
                id=order["id"]) == [("paid", None)]
    orders.start()
    orders.wait_healthy()
    fulfilled = market.wait_for_status(order["id"], "fulfilled", timeout=45)
    assert fulfilled["entitlement_id"] == ent_id
    assert [e["id"] for e in market.entitlements_of(order["id"])] == [ent_id]
    assert_each_once(settled_log(market), {order["id"]: ORDER_ACTIONS, ent_id: ENTITLEMENT_ACTIONS})


def new_audit_events(market: Market) -> None:
    """Something worth an audit event (access records the new organisation)."""
    market.operator.create_organisation(f"Crash Test Org {uuid.uuid4().hex[:6]}", ["buyer"])


def test_audit_killed_after_storing_a_batch_but_before_answering_keeps_it_once(
        market: Market, wiring: Wiring, tmp_path: Path) -> None:
    """Audit commits a batch and dies before its answer leaves: the producer re-sends the
    batch to the restarted audit, which must keep the events at the seq it gave them."""
    cluster = market.cluster
    checkpoint = tmp_path / "checkpoint.txt"
    assert market.verify_log(checkpoint) == 0  # pins the log as it was
    wiring.to_audit.arm(lambda method, path, _: method == "POST" and path == "/v1/events",
                        cluster.procs["audit"].kill)
    new_audit_events(market)
    assert wiring.to_audit.fired.wait(30), "no event batch reached audit"
    stored = wiring.to_audit.intercepted
    assert stored is not None and stored.status == 200, stored
    answered = {r["event_id"]: r["seq"] for r in json.loads(stored.answer)["results"]}
    assert answered
    cluster.procs["audit"].start()
    cluster.procs["audit"].wait_healthy()
    log = settled_log(market)
    assert {e["event_id"]: e["seq"] for e in log if e["event_id"] in answered} == answered
    assert market.verify_log(checkpoint) == 0


def test_audit_killed_mid_append_and_mid_checkpoint_loses_and_doubles_nothing(
        market: Market, tmp_path: Path) -> None:
    """SIGKILL while the checkpointer has signed a checkpoint but not stored it, and while
    the writer's transaction has read the tree but not inserted its events (PostgreSQL
    table locks hold both there; pg_stat_activity shows they are). After the restart the
    log verifies against a checkpoint saved before, and every outboxed event is in it once."""
    cluster = market.cluster
    if not is_postgresql(cluster):
        pytest.skip("the moment is held and observed with PostgreSQL locks and pg_stat_activity")
    audit, url = cluster.procs["audit"], database_url(cluster, "audit")
    checkpoint = tmp_path / "checkpoint.txt"
    assert market.verify_log(checkpoint) == 0
    with tables_locked(url, "checkpoints"):
        new_audit_events(market)  # the tree grows: the next checkpoint run signs, then waits to store
        wait_until(lambda: waiting_statements(url, "INSERT INTO checkpoints%"), "a checkpoint held mid-way")
        with tables_locked(url, "events"):
            new_audit_events(market)
            # The writer loads events with COPY on PostgreSQL (services/audit/log.py).
            wait_until(lambda: waiting_statements(url, "COPY %events%"), "an append held mid-way")
            audit.kill()
    audit.start()
    audit.wait_healthy()
    settled_log(market)
    assert market.verify_log(checkpoint) == 0
