"""The marketplace's parties and products on a running cluster, and what the
end-to-end tests check about it (audit trails, entitlements, polling)."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from services.audit import verify
from shared.outbox import AUDIT_EVENT
from sluice.client import Endpoints, SluiceClient
from sluice.demo import bind_products, product_specs
from tests.e2e.cluster import OPERATOR_ID, OPERATOR_SECRET, Cluster, ReplicatedCluster
from tests.e2e.databases import outboxes

JSON = dict[str, Any]
T = TypeVar("T")

#: What one paid purchase leaves in the audit log, about the order and about its entitlement.
ORDER_ACTIONS = ("orders.order.created", "orders.payment.created", "orders.order.paid",
                 "orders.order.fulfilled")
ENTITLEMENT_ACTIONS = ("access.entitlement.granted",)
QUERY_ACTIONS = ("access.data_token.issued", "access.usage.recorded", "dataservice.query.executed")

AGGREGATE_QUERY: JSON = {
    "select": ["district"], "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "cost_eur",
                                                           "as": "avg_cost"}],
    "group_by": ["district"], "order_by": [{"column": "district", "dir": "asc"}], "limit": 100,
}


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 30.0,
               interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_for_bindings(cluster: Cluster) -> None:
    """The data service re-reads its aliases file every 2 s: wait until it has loaded the file
    as it is now, so a buyer whose order is fulfilled within that time does not query a product
    it does not serve yet (a 403 "wrong-product" seen in CI once fulfilment got faster)."""
    count = len((yaml.safe_load(cluster.aliases_file.read_text()) or {}).get("aliases") or {})
    loaded = f"product aliases loaded from {cluster.aliases_file}: {count}"
    logs = ([r.log for r in cluster.replicas["dataservice"]] if isinstance(cluster, ReplicatedCluster)
            else [cluster.procs["dataservice"].log])
    wait_until(lambda: all(loaded in log.read_text(errors="replace") for log in logs),
               f"every data service process to load {count} product binding(s)", timeout=15)


@dataclass
class Market:
    cluster: Cluster
    endpoints: Endpoints
    operator: SluiceClient
    provider: SluiceClient
    provider_org: str
    buyer: SluiceClient
    buyer_org: str
    regulator: SluiceClient
    transit: JSON  # the listed L1 product (free plan), as the catalog returned it
    health: JSON   # the listed L3 product (one-off plan), version 1

    @property
    def data_url(self) -> str:
        return self.cluster.urls["dataservice"]

    def party(self, role: str, name: str) -> tuple[SluiceClient, str]:
        org = self.operator.create_organisation(f"{name} {uuid.uuid4().hex[:6]}", [role])
        cred = self.operator.create_api_client(org["id"], f"{role} client")
        return SluiceClient(cred["client_id"], cred["client_secret"], self.endpoints), str(org["id"])

    # --- orders ---------------------------------------------------------------------
    def place_health_order(self, purpose: str = "research") -> JSON:
        plan = self.health["plans"][0]
        quote = self.buyer.quote(self.health["id"], self.health["version"], plan["id"])
        return self.buyer.create_order(quote["id"], purpose)

    def wait_for_status(self, order_id: str, status: str, timeout: float = 30.0) -> JSON:
        return self.buyer.wait_for_order(order_id, status, timeout=timeout)

    def entitlements_of(self, order_id: str) -> list[JSON]:
        """Every entitlement access holds for the order (as the operator sees them)."""
        return self.operator.list_entitlements(order_id=order_id)

    # --- audit --------------------------------------------------------------------------
    def export(self) -> list[JSON]:
        """The whole audit log, in seq order (NDJSON export)."""
        text = self.regulator.request("GET", f"{self.endpoints.audit}/v1/events/export")
        return [json.loads(line) for line in str(text).splitlines() if line.strip()]

    def events_about(self, *subject_ids: str) -> list[JSON]:
        events: list[JSON] = []
        for sid in subject_ids:
            events += self.regulator.pages(f"{self.endpoints.audit}/v1/events",
                                           {"subject_id": sid, "limit": 200})
        return sorted(events, key=lambda e: e["seq"])

    def wait_for_trail(self, expected: Mapping[str, Iterable[str]], timeout: float = 30.0) -> list[JSON]:
        """Wait until every expected action has reached the audit log for its subject
        (``{subject_id: actions}``); return the events about those subjects."""
        def complete() -> list[JSON] | None:
            events = self.events_about(*expected)
            seen = {(e["subject"]["id"], e["action"]) for e in events}
            missing = [(s, a) for s, actions in expected.items() for a in actions if (s, a) not in seen]
            return None if missing else events
        return wait_until(complete, f"audit events {expected}", timeout=timeout, interval=0.3)

    def verify_log(self, checkpoint_file: Path) -> int:
        """The regulator's full check (exit 0 only when everything asked was verified): the
        checkpoint key is pinned, as a regulator who took it out of band would, and every event
        is re-downloaded with the regulator's token."""
        key = httpx.get(f"{self.endpoints.audit}/v1/public-key", timeout=10).json()["verifier_key"]
        return verify.main(["--url", self.endpoints.audit, "--token", self.regulator.bearer(),
                            "--public-key", key, "--checkpoint-file", str(checkpoint_file)])


#: After every outbox has delivered, how long to wait for a late duplicate before comparing
#: (several relay polls: the cluster polls outboxes every 0.2 s).
SETTLE_SECONDS = 1.0


def settled_log(market: Market, timeout: float = 60.0) -> list[JSON]:
    """The whole audit log once everything is delivered, checked against every service's
    outbox: each audit event any outbox ever held is in the log exactly once, the log holds
    nothing no outbox sent (except the audit service's own read events), seq has no gaps.

    Settled means: every outbox has delivered every message (audit events, and the commands
    whose handling writes more of them), then ``SETTLE_SECONDS`` more passed (a redelivery
    would arrive within them), and the outboxes were the same before and after the export
    (nothing was delivered while it ran)."""
    cluster = market.cluster
    deadline = time.monotonic() + timeout
    while True:
        before = outboxes(cluster)
        pending = {s: [m for m in rows if not m[2]] for s, rows in before.items()}
        if not any(pending.values()):
            time.sleep(SETTLE_SECONDS)
            before = outboxes(cluster)
            log = market.export()
            if before == outboxes(cluster) and all(m[2] for rows in before.values() for m in rows):
                break
            pending = {"(outboxes changed while the log was exported)": []}
        if time.monotonic() > deadline:
            raise AssertionError(f"outboxes not delivered after {timeout}s: {pending}")
        time.sleep(0.3)
    assert_log_is_consistent(log)
    sent = {mid: service for service, rows in before.items() for kind, mid, _ in rows
            if kind == AUDIT_EVENT}
    times = Counter(e["event_id"] for e in log)
    missing = {mid: service for mid, service in sent.items() if times[mid] == 0}
    strangers = [(e["seq"], e["service"], e["action"]) for e in log
                 if e["event_id"] not in sent and e["service"] != "audit"]
    assert not missing, f"{len(missing)} outboxed audit events are not in the log: {missing}"
    assert not strangers, f"events in the log that no outbox sent: {strangers}"
    return log


def assert_each_once(log: list[JSON], expected: Mapping[str, Iterable[str]]) -> None:
    """In a settled log, each expected (subject, action) appears exactly once."""
    counts = Counter((e["subject"]["id"], e["action"]) for e in log)
    trail = [(e["seq"], e["action"], e["subject"]["id"]) for e in log if e["subject"]["id"] in expected]
    for subject, actions in expected.items():
        for action in actions:
            assert counts[(subject, action)] == 1, (
                f"{action} about {subject} appears {counts[(subject, action)]} times; trail: {trail}")


def assert_log_is_consistent(events: list[JSON]) -> None:
    """The exported log: seq 0..n-1 without gaps, every event id once."""
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(len(events))), "the audit log has gaps or repeats in seq"
    dupes = [i for i, n in Counter(e["event_id"] for e in events).items() if n > 1]
    assert not dupes, f"event ids stored twice: {dupes}"


def stripe_js_confirms(stripe_url: str, payment_intent_id: str, payment_method: str = "pm_card_visa") -> JSON:
    """What Stripe.js does in the buyer's browser: confirm the intent directly at Stripe
    (the orders service learns the outcome only from a webhook or its reconciler)."""
    auth = {"Authorization": "Bearer sk_test_sluice"}
    with httpx.Client(base_url=stripe_url, headers=auth, timeout=10) as http:
        # localstripe takes the payment method as an update, then a bare confirm.
        resp = http.post(f"/v1/payment_intents/{payment_intent_id}", data={"payment_method": payment_method})
        assert resp.status_code == 200, resp.text
        resp = http.post(f"/v1/payment_intents/{payment_intent_id}/confirm")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def open_market(cluster: Cluster) -> Market:
    """Onboard a provider, a buyer and a regulator; list the demo's two products (L1
    self-service, L3 after the regulator's approval) and bind them in the data service."""
    endpoints = Endpoints(access=cluster.urls["access"], catalog=cluster.urls["catalog"],
                          orders=cluster.urls["orders"], audit=cluster.urls["audit"])
    operator = SluiceClient(OPERATOR_ID, OPERATOR_SECRET, endpoints)
    clients: dict[str, tuple[SluiceClient, str]] = {}
    for role, name in (("provider", "Example Data Lab"), ("buyer", "Acme Research"),
                       ("regulator", "Data Protection Authority")):
        org = operator.create_organisation(f"{name} {uuid.uuid4().hex[:6]}", [role])
        cred = operator.create_api_client(org["id"], f"{role} client")
        clients[role] = (SluiceClient(cred["client_id"], cred["client_secret"], endpoints), str(org["id"]))
    provider, provider_org = clients["provider"]
    buyer, buyer_org = clients["buyer"]
    regulator = clients["regulator"][0]
    transit_spec, health_spec = product_specs(cluster.urls["dataservice"], uuid.uuid4().hex[:6])
    transit = provider.create_product(transit_spec)
    health = provider.create_product(health_spec)
    transit = provider.submit_product(transit["id"])
    assert transit["status"] == "listed", transit
    provider.submit_product(health["id"])
    health = regulator.approve_product(health["id"], "Attestation checked: k=10, aggregates only.")
    assert health["status"] == "listed", health
    bind_products(cluster.aliases_file, transit["id"], health["id"])
    wait_for_bindings(cluster)
    return Market(cluster, endpoints, operator, provider, provider_org, buyer, buyer_org, regulator,
                  transit, health)
