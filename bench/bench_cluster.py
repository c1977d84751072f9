"""Cluster benchmark: throughput through HAProxy with 1 replica per service, then 2.

The replicated cluster of `make cluster` (``deploy/local/cluster.py``, every service behind
HAProxy, on PostgreSQL; run on free ports by the e2e harness's ``ReplicatedCluster``) is started
with one replica per service, then with two, each on fresh databases. For each path below the
load generator (``bench/load.py``: wrk, or Python in its own process) drives the balancer for a
few seconds; the row's figure is the 2-replica rate and its limit twice the 1-replica rate
measured in the same run (linear scaling), so the ratio is the scaling efficiency:

* catalog: search (GET /v1/products?q=…, the buyer's token verified, FTS on PostgreSQL)
* audit: append batches of 100 fresh events (one ordered writer across replicas)
* access: platform token issue (POST /oauth/token: Argon2id secret check + RS256 signature)
* orders: quote (POST /v1/quotes: orders calls catalog's internal API through the balancer)

Scaling from 1 to 2 replicas needs free cores: on a machine with N cores each replica process
is one worker (``--workers 1``), so the figures say how much of the added CPU turns into
throughput, and where a shared resource (PostgreSQL, the audit writer's lock) caps it. Needs
HAProxy (``apt-get install haproxy``); without it the script says so and reports nothing.

    .venv/bin/python bench/bench_cluster.py                 # 5 s per path, 16 connections
    .venv/bin/python bench/bench_cluster.py --seconds 8 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, tests/ beside the packages

import httpx

from bench.bench_audit import append_requests
from bench.common import db_prefix
from bench.load import LoadResult, format_request, run_load_async
from bench.report import Report
from tests.e2e.cluster import ReplicatedCluster, cluster_mode_unavailable
from tests.e2e.market import open_market

#: Production-like settings instead of the e2e harness's quick polling (only secrets stay).
_PREFIXES = ("ACCESS", "AUDIT", "CATALOG", "ORDERS", "DATASERVICE")
SETTINGS = {
    **{f"SLUICE_{s}_OUTBOX_POLL_SECONDS": "0.5" for s in _PREFIXES},
    **{f"SLUICE_{s}_LOG_LEVEL": "WARNING" for s in _PREFIXES},
    "SLUICE_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "2",
}
PATHS = ("catalog: search", "audit: append, batches of 100", "access: platform token issue", "orders: quote")
UNITS = {"audit: append, batches of 100": "events/s"}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def requests_for(cluster: ReplicatedCluster) -> dict[str, tuple[str, list[bytes]]]:
    """Each path: (service whose balancer port takes it, the requests replayed)."""
    market = open_market(cluster)
    buyer = {"Authorization": f"Bearer {market.buyer.bearer()}"}
    service = {"Authorization": f"Bearer {svc_token(cluster)}"}
    plan = market.health["plans"][0]
    quote = json.dumps({"product_id": market.health["id"], "version": market.health["version"],
                        "plan_id": plan["id"]}).encode()
    as_json = {**buyer, "Content-Type": "application/json"}
    credentials = f"{market.buyer.client_id}:{market.buyer.client_secret}".encode()
    basic = {"Authorization": "Basic " + base64.b64encode(credentials).decode(),
             "Content-Type": "application/x-www-form-urlencoded"}
    return {
        "catalog: search": ("catalog", [format_request("GET", "/v1/products?q=health%20visits&limit=20",
                                                       buyer)]),
        "audit: append, batches of 100": ("audit", append_requests(service["Authorization"].split()[1])),
        "access: platform token issue": ("access", [format_request("POST", "/oauth/token", basic,
                                                                   b"grant_type=client_credentials")]),
        "orders: quote": ("orders", [format_request("POST", "/v1/quotes", as_json, quote)]),
    }


def svc_token(cluster: ReplicatedCluster) -> str:
    resp = httpx.post(f"{cluster.urls['access']}/oauth/token", data={"grant_type": "client_credentials"},
                      auth=("svc-catalog", cluster.service_secrets["catalog"]), timeout=30)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


async def measure(replicas: int, args: argparse.Namespace) -> dict[str, tuple[LoadResult, str]]:
    """Rates of every path through the balancer of a cluster with ``replicas`` per service."""
    with tempfile.TemporaryDirectory(prefix="sluice-bench-cluster-") as tmp:
        cluster = ReplicatedCluster(Path(tmp), replica_count=replicas, extra_env=SETTINGS,
                                    db_prefix=f"{db_prefix('sl_cluster')}_bench")
        try:
            cluster.start()
            loads = requests_for(cluster)
            out: dict[str, tuple[LoadResult, str]] = {}
            for path, (service, requests) in loads.items():
                port = cluster.ports[service]
                await run_load_async(port, requests, seconds=1, connections=2)  # warm-up
                before = load_average()
                result = await run_load_async(port, requests, seconds=args.seconds,
                                              connections=args.concurrency)
                out[path] = (result, f"{before} → {load_average()}")
                print(f"  {replicas} replica(s) {path}: {result.brief()} (load avg {out[path][1]})",
                      flush=True)
            return out
        finally:
            cluster.stop()


def rate(path: str, result: LoadResult) -> float:
    return result.rps * (100 if path.startswith("audit") else 1)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    report = Report("cluster")
    reason = cluster_mode_unavailable()
    try:
        if reason:
            report.note(f"cluster scaling not measured: {reason}")
            return 0
        one = await measure(1, args)
        two = await measure(2, args)
        for path in PATHS:
            (r1, la1), (r2, la2) = one[path], two[path]
            unit = UNITS.get(path, "requests/s")
            report.row(f"cluster: {path} through HAProxy, 2 replicas", figure=round(rate(path, r2), 1),
                       unit=unit, limit=round(2 * rate(path, r1), 1),
                       limit_label="2 × the same path with 1 replica (linear scaling)",
                       loadgen=r2.tool, details={
                           "one_replica": r1.as_dict(), "two_replicas": r2.as_dict(),
                           "load_average_one": la1, "load_average_two": la2,
                           "errors": {"one": r1.errors, "two": r2.errors},
                           "cpu_count": os.cpu_count()})
        report.note(f"cluster: {os.cpu_count()} CPUs shared by every replica, PostgreSQL, HAProxy and "
                    "the load generator; replicas are `serve --workers 1`")
    except Exception:
        report.failed("cluster: scaling from 1 to 2 replicas", "requests/s", traceback.format_exc())
    finally:
        report.save()
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = asyncio.run(main())
    print(f"cluster benchmark took {time.monotonic() - started:.0f} s")
    sys.exit(code)

