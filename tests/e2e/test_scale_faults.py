"""Faults under load on the replicated cluster (`make cluster`: every service twice behind
HAProxy, on PostgreSQL).

One bounded load (purchases, data queries, audit appends, catalog searches) runs while, one
service after another, a replica is SIGKILLed and started again; the access signing key is
rotated; every PostgreSQL connection of the cluster is dropped (``pg_terminate_backend``),
twice; and an entitlement is revoked. The fixture runs that once and prints the load it held and
the errors it saw, by status. Each test then checks one promise about what the load was told:

* every acknowledged order is paid once, with exactly one entitlement;
* every event is in the audit log exactly once, and the log verifies against a checkpoint
  saved before the faults;
* no query quota or privacy budget is overspent;
* a token signed with the retired key is refused everywhere once its grace period is over;
* the revocation reached every data-service replica within the stated bound.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from jose import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.dataservice.aliases import bind
from sluice.demo import product_specs
from tests.e2e.cluster import ReplicatedCluster, cluster_mode_unavailable
from tests.e2e.databases import rows
from tests.e2e.load import Ledger, Load, Outcomes, Party
from tests.e2e.market import (
    AGGREGATE_QUERY,
    ENTITLEMENT_ACTIONS,
    ORDER_ACTIONS,
    Market,
    assert_log_is_consistent,
    wait_until,
)
from tests.support import POSTGRES_URL

pytestmark = [pytest.mark.cluster]

#: How long the load runs at least (the faults take what they take on top).
LOAD_SECONDS = 8.0
#: Platform tokens live 60 s here (the least access allows), data tokens 30 s, access replicas
#: re-read keys every 5 s: the retired key's grace period (refresh interval + longest token
#: lifetime + verification leeway) ends about 2 min after the rotation.
ACCESS_SETTINGS = {"SLUICE_ACCESS_TOKEN_LIFETIME_SECONDS": "60",
                   "SLUICE_ACCESS_DATA_TOKEN_LIFETIME_SECONDS": "30",
                   "SLUICE_ACCESS_KEY_REFRESH_SECONDS": "5"}
#: The e2e clusters' JWKS_MIN_REFETCH_SECONDS: how late after the grace period a verifier may
#: still hold the retired key (docs/security.md).
JWKS_MIN_REFETCH_SECONDS = 1.0
REVOCATION_POLL_SECONDS = 1.0
#: The stated bound (docs/security.md): a revocation reaches every data-service replica within
#: two poll intervals (the poll running when it happened, then the next one), plus the time one
#: poll takes, generously counted on a machine this loaded.
REVOCATION_BOUND_SECONDS = 2 * REVOCATION_POLL_SECONDS + 3.0
#: An L3 answer charged 0.1 of the entitlement's ε share (2.0 on the demo plan) and of the
#: product's ε per period (10.0 in the demo mapping, for every buyer together).
DP_QUERY = {**AGGREGATE_QUERY, "epsilon": 0.1}
#: Rows of the L1 product, on a plan of ROWS_QUOTA queries.
ROWS_QUERY = {"select": ["district", "year", "month", "trips"], "limit": 10}
ROWS_QUOTA = 25


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedCluster]:
    reason = cluster_mode_unavailable()
    if reason:
        pytest.skip(reason)
    c = ReplicatedCluster(tmp_path_factory.mktemp("replicated"), extra_env=ACCESS_SETTINGS)
    try:
        c.start()
        yield c
    except Exception:
        print(c.logs())
        raise
    finally:
        c.stop()


@dataclass
class Run:
    """What the faulted load did and saw."""

    outcomes: Outcomes
    ledger: Ledger
    checkpoint_file: Path
    querier_entitlements: dict[str, str]  # "query-rows" / "query-dp" → entitlement id
    forged: dict[str, str]  # "platform"/"data" → a long-lived token signed with the retired key
    retire_after: datetime
    revocation_seconds: dict[str, float]  # data-service replica → seconds until it refused
    faults: list[str] = field(default_factory=list)


# --- the faults ----------------------------------------------------------------------------

async def _terminate_backends(prefix: str) -> int:
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname LIKE :p AND pid <> pg_backend_pid()"), {"p": f"{prefix}\\_%"})
            return sum(1 for (ok,) in rows if ok)
    finally:
        await engine.dispose()


def terminate_backends(prefix: str) -> int:
    """Drop every PostgreSQL connection to the cluster's databases (what a failover does)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _terminate_backends(prefix)).result()


def kill_and_restart(cluster: ReplicatedCluster, service: str, index: int) -> str:
    replica = cluster.replicas[service][index]
    replica.kill()
    time.sleep(1.0)  # the balancer notices (failed connections are retried on the other replica)
    started = time.monotonic()
    cluster.restart(replica)
    return f"SIGKILL {replica.name}, back in rotation after {time.monotonic() - started:.1f} s"


def forge(token: str, private_pem: str, kid: str, lifetime: int = 900) -> str:
    """What a thief of the signing key can do: the same claims, signed again, living 15 minutes
    (the longest a data service takes), long past the key's grace period."""
    claims = jwt.get_unverified_claims(token)
    header = jwt.get_unverified_header(token)
    now = int(time.time())
    claims.update(iat=now, nbf=now, exp=now + lifetime, jti=uuid.uuid4().hex)
    return str(jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid, "typ": header.get("typ")}))


def accepted_by(url: str, path: str, token: str, body: dict[str, Any] | None = None) -> int:
    """The status ``url`` answers a request with ``token`` (a POST when there is a body)."""
    headers = {"Authorization": f"Bearer {token}"}
    if body is None:
        return httpx.get(f"{url}{path}", headers=headers, timeout=20).status_code
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=20).status_code


def revocation_reaches_replicas(market: Market, cluster: ReplicatedCluster,
                                entitlement_id: str) -> dict[str, float]:
    """Revoke the entitlement; seconds until each data-service replica refuses its token."""
    data_token = market.buyer.issue_data_token(entitlement_id)["access_token"]
    for replica in cluster.replicas["dataservice"]:
        assert accepted_by(replica.url, "/v1/query", data_token, AGGREGATE_QUERY) == 200
    market.regulator.request("POST", f"{market.endpoints.access}/v1/entitlements/{entitlement_id}/revoke",
                             json={"reason": "revocation under load"})
    revoked_at, seen = time.monotonic(), {}
    while len(seen) < len(cluster.replicas["dataservice"]) and time.monotonic() - revoked_at < 30:
        for replica in cluster.replicas["dataservice"]:
            if replica.name not in seen and accepted_by(replica.url, "/v1/schema", data_token) == 401:
                seen[replica.name] = time.monotonic() - revoked_at
        time.sleep(0.05)
    return seen


def bought_entitlement(market: Market) -> str:
    """The entitlement of a paid, fulfilled order of the L3 product."""
    order = market.place_health_order()
    market.buyer.pay_order(order["id"], "pm_card_visa")
    market.wait_for_status(order["id"], "fulfilled", timeout=60)
    [ent] = market.entitlements_of(order["id"])
    return str(ent["id"])


def quota_entitlement(market: Market) -> str:
    """The entitlement of a free order of an L1 product whose plan allows ROWS_QUOTA queries."""
    spec, _ = product_specs(market.data_url, f"quota-{uuid.uuid4().hex[:6]}")
    spec["plans"][0]["query_quota"] = ROWS_QUOTA
    product = market.provider.submit_product(market.provider.create_product(spec)["id"])
    bind(market.cluster.aliases_file, product["id"], "prd_demo_transit", {"prd_demo_transit", "prd_demo_health"})
    quote = market.buyer.quote(product["id"], product["version"], product["plans"][0]["id"])
    order = market.buyer.create_order(quote["id"], "research")
    market.wait_for_status(order["id"], "fulfilled", timeout=60)
    [ent] = market.entitlements_of(order["id"])
    return str(ent["id"])


@pytest.fixture(scope="module")
def run(cluster: ReplicatedCluster, market: Market, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The load with the faults, once for the module; the figures are printed."""
    urls = cluster.urls
    buyer = Party(str(market.buyer.client_id), str(market.buyer.client_secret))
    queriers = {"query-rows": quota_entitlement(market), "query-dp": bought_entitlement(market)}
    revoked_ent = bought_entitlement(market)
    checkpoint = tmp_path_factory.mktemp("regulator") / "checkpoint.txt"
    assert market.verify_log(checkpoint) == 0  # the regulator's checkpoint, before any fault

    # The attacker's copy of the signing key that is about to be retired, and tokens forged with it.
    [(old,)] = rows(cluster.database_url("access"), "SELECT json_build_object('kid', kid, 'pem', private_pem) "
                    "FROM signing_keys WHERE status = 'active'")
    data_token = market.buyer.issue_data_token(queriers["query-dp"])["access_token"]
    forged = {"platform": forge(market.operator.bearer(), old["pem"], old["kid"]),
              "data": forge(data_token, old["pem"], old["kid"])}
    assert accepted_by(urls["catalog"], "/v1/me", forged["platform"]) == 200  # before: valid
    assert accepted_by(urls["dataservice"], "/v1/schema", forged["data"]) == 200

    outcomes, ledger = Outcomes(), Ledger()
    load = Load(urls, outcomes, ledger)
    load.add("purchases-1", load.purchases(buyer, market.health))
    load.add("purchases-2", load.purchases(buyer, market.health))
    load.add("queries-rows", load.queries(buyer, queriers["query-rows"], ROWS_QUERY, kind="query-rows"))
    load.add("queries-dp", load.queries(buyer, queriers["query-dp"], DP_QUERY, kind="query-dp"))
    load.add("audit", load.audit_appends("svc-catalog", cluster.service_secrets["catalog"], "catalog"))
    load.add("search", load.searches(buyer))
    result = Run(outcomes, ledger, checkpoint, queriers, forged, retire_after=datetime.max,
                 revocation_seconds={})
    load.start()
    try:
        time.sleep(2)
        rotated = market.operator.request("POST", f"{urls['access']}/v1/signing-keys/rotate")
        result.faults.append(f"rotated the signing key: {old['kid']} → {rotated['kid']}")
        keys = market.operator.request("GET", f"{urls['access']}/v1/signing-keys")
        result.retire_after = datetime.fromisoformat(
            next(k for k in keys["items"] if k["kid"] == old["kid"])["retire_after"].replace("Z", "+00:00"))
        for n, service in enumerate(("catalog", "orders", "access", "audit", "dataservice")):
            result.faults.append(kill_and_restart(cluster, service, n % 2))
            if service == "access":
                result.faults.append(f"pg_terminate_backend: {terminate_backends(cluster.db_prefix)} "
                                     "connections dropped")
        result.revocation_seconds = revocation_reaches_replicas(market, cluster, revoked_ent)
        result.faults.append(f"pg_terminate_backend: {terminate_backends(cluster.db_prefix)} connections dropped")
        time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - outcomes.started)))
    finally:
        load.finish()
    print("\nfaults, in order:\n  " + "\n  ".join(result.faults))
    print(outcomes.report())
    print(f"acknowledged: {len(ledger.orders_created)} orders created, {len(ledger.orders_paid)} paid; "
          f"{len(ledger.events_stored)} audit events stored, {len(ledger.events_unknown)} unacknowledged; "
          f"revocation reached {result.revocation_seconds}")
    quiesce(cluster, market, ledger)
    return result


def quiesce(cluster: ReplicatedCluster, market: Market, ledger: Ledger) -> None:
    """Wait until every paid order is fulfilled and every outbox has delivered everything."""
    def pending() -> bool:
        orders = {o["id"]: o["status"] for o in market.buyer.list_orders(limit=100)}
        late = [i for i in ledger.orders_paid if orders.get(i) != "fulfilled"]
        undelivered = sum(int(rows(cluster.database_url(s), "SELECT count(*) FROM outbox "
                                   "WHERE delivered_at IS NULL")[0][0])
                          for s in ("catalog", "orders", "access", "dataservice"))
        return not late and undelivered == 0
    wait_until(pending, "every paid order fulfilled and every outbox delivered", timeout=90, interval=1.0)


# --- the promises ----------------------------------------------------------------------------

def test_every_acknowledged_order_is_paid_once_with_exactly_one_entitlement(
        run: Run, market: Market, cluster: ReplicatedCluster) -> None:
    assert run.ledger.orders_paid, "the load paid for no order; the test proved nothing"
    entitlements = Counter(e["order_id"] for e in market.operator.list_entitlements(limit=100))
    intents = stripe_list(cluster.stripe_url, "payment_intents")
    refunded = {r["payment_intent"] for r in stripe_list(cluster.stripe_url, "refunds")}
    paid = Counter(pi["metadata"].get("order_id") for pi in intents
                   if pi["status"] == "succeeded" and pi["id"] not in refunded)
    orders = {o["id"]: o for o in market.buyer.list_orders(limit=100)}
    for order_id in run.ledger.orders_paid:
        assert orders[order_id]["status"] == "fulfilled", orders[order_id]
        assert entitlements[order_id] == 1, f"order {order_id} has {entitlements[order_id]} entitlements"
        assert paid[order_id] == 1, f"order {order_id} is paid {paid[order_id]} times at Stripe"
    for order_id in run.ledger.orders_created:  # also those whose payment was never acknowledged
        assert paid[order_id] <= 1 and entitlements[order_id] <= 1, order_id


def test_every_event_is_in_the_audit_log_exactly_once_and_it_verifies_against_the_earlier_checkpoint(
        run: Run, market: Market) -> None:
    log = market.export()
    assert_log_is_consistent(log)  # seq 0..n-1, no event id twice
    stored = {e["event_id"] for e in log}
    assert run.ledger.events_stored <= stored, f"{len(run.ledger.events_stored - stored)} acknowledged events lost"
    trail = Counter((e["subject"]["id"], e["action"]) for e in log)
    ents = {e["order_id"]: e["id"] for e in market.operator.list_entitlements(limit=100)}
    for order_id in run.ledger.orders_paid:
        for action in ORDER_ACTIONS:
            assert trail[(order_id, action)] == 1, f"{action} about {order_id}: {trail[(order_id, action)]}"
        for action in ENTITLEMENT_ACTIONS:
            assert trail[(ents[order_id], action)] == 1, f"{action} about {ents[order_id]}"
    assert market.verify_log(run.checkpoint_file) == 0  # consistent with the checkpoint from before


def test_no_query_quota_or_privacy_budget_is_overspent(run: Run, market: Market) -> None:
    answered = {kind: sum(n for (k, s), n in run.outcomes.counts.items() if k == kind and s == 200)
                for kind in run.querier_entitlements}
    for ent_id in run.querier_entitlements.values():  # the access service's ledger
        ent = market.operator.request("GET", f"{market.endpoints.access}/v1/entitlements/{ent_id}")
        limits, usage = ent["limits"], ent["usage"]
        if limits["query_quota"] is not None:
            assert usage["queries_used"] <= limits["query_quota"], ent
        if limits["epsilon_budget"] is not None:
            assert usage["epsilon_used"] <= limits["epsilon_budget"] + 1e-9, ent
    assert answered["query-rows"] <= ROWS_QUOTA, f"{answered['query-rows']} answers on a quota of {ROWS_QUOTA}"
    # The data service's own books: the product's ε per period and every entitlement's share.
    [spend] = market.regulator.pages(f"{market.data_url}/v1/privacy/budgets", {"product_id": "prd_demo_health"})
    assert spend["epsilon_spent"] <= spend["epsilon_total"] + 1e-9, spend
    charges = list(market.regulator.pages(f"{market.data_url}/v1/privacy/charges",
                                          {"product_id": "prd_demo_health", "limit": 200}))
    assert abs(sum(c["epsilon"] for c in charges) - spend["epsilon_spent"]) < 1e-6
    share = Counter[str]()
    for c in charges:
        share[c["entitlement_id"]] += c["epsilon"]
    assert share[run.querier_entitlements["query-dp"]] <= 2.0 + 1e-9, share
    assert answered["query-dp"] * DP_QUERY["epsilon"] <= 2.0 + 1e-9
    # The load asked for more than the limits allow, and was refused: the limits were exercised.
    refused = {k: run.outcomes.counts[(k, 403)] + run.outcomes.counts[(k, 429)] for k in answered}
    assert all(refused.values()), run.outcomes.report()


def test_a_token_signed_with_the_retired_key_is_refused_everywhere_after_its_grace_period(
        run: Run, cluster: ReplicatedCluster) -> None:
    wait = (run.retire_after - datetime.now(run.retire_after.tzinfo)).total_seconds()
    time.sleep(max(0.0, wait) + JWKS_MIN_REFETCH_SECONDS + 1.0)
    refused = {}
    for service in ("access", "catalog", "orders", "audit", "dataservice"):
        path, token = ("/v1/schema", run.forged["data"]) if service == "dataservice" else \
            ("/v1/me", run.forged["platform"])
        for replica in cluster.replicas[service]:
            resp = httpx.get(f"{replica.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=20)
            refused[replica.name] = (resp.status_code, resp.json().get("detail"))
    assert all(status == 401 and "unknown key" in detail for status, detail in refused.values()), refused


def test_the_revocation_reached_every_data_service_replica_within_the_stated_bound(
        run: Run, cluster: ReplicatedCluster) -> None:
    names = {r.name for r in cluster.replicas["dataservice"]}
    assert set(run.revocation_seconds) == names, f"not every replica refused: {run.revocation_seconds}"
    slow = {n: s for n, s in run.revocation_seconds.items() if s > REVOCATION_BOUND_SECONDS}
    assert not slow, f"over the bound of {REVOCATION_BOUND_SECONDS} s: {slow}"


def stripe_list(stripe_url: str, resource: str) -> list[dict[str, Any]]:
    """Every object of a localstripe list endpoint."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    with httpx.Client(base_url=stripe_url, headers={"Authorization": "Bearer sk_test_sluice"}, timeout=30) as http:
        while True:
            page = http.get(f"/v1/{resource}", params=params).json()
            items += page["data"]
            if not page.get("has_more"):
                return items
            params["starting_after"] = page["data"][-1]["id"]

