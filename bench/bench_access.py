"""Access benchmark: data-access token issue rate against raw RS256 signing.

Issues RFC 9068 data-access tokens with ``POST /v1/entitlements/{id}/tokens`` over HTTP
against a real uvicorn process of the access service (``serve --workers 1``, then 2): every
request verifies the buyer's platform token, re-checks the entitlement, both organisations,
counters, usage policy and the product's catalog status, signs, and writes an audit event
through the outbox. The load comes from ``bench/load.py`` (wrk, or Python in its own process).
The limit, measured in the same run: python-jose ``jwt.encode`` of the same claims with a key
built once. The catalog's internal API and the audit sink are a small fake served from this
process.

    .venv/bin/python bench/bench_access.py                  # PostgreSQL (BENCH_BACKENDS), 6 s runs
    .venv/bin/python bench/bench_access.py --seconds 3 --concurrency 16 --no-workers2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, tests/ beside the packages

from bench.common import (
    ROOT,
    Server,
    _children,
    backends,
    db_prefix,
    drop_pg,
    free_port,
    recreate_pg,
    running,
)
from bench.load import format_request, run_load_async
from bench.report import Report
from shared.migrations import upgrade
from tests.access.fake_catalog import FakeCatalog, plan

OPERATOR, OPERATOR_SECRET = "bench-operator", "bench-operator-secret"
ORDERS, ORDERS_SECRET = "svc-orders", "bench-orders-secret"


def start_fake(fake: FakeCatalog, port: int) -> uvicorn.Server:
    """The fake catalog (and an audit sink, so the outbox drains as in production)."""

    @fake.app.post("/v1/events")
    async def events(body: dict[str, Any]) -> dict[str, Any]:
        return {"results": [{"event_id": e.get("event_id"), "seq": i}
                            for i, e in enumerate(body.get("events", []))]}

    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def access_env(port: int, database_url: str, fake_url: str) -> dict[str, str | None]:
    return {
        "SLUICE_ACCESS_DATABASE_URL": database_url,
        "SLUICE_ACCESS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SLUICE_ACCESS_CATALOG_URL": fake_url,
        "SLUICE_ACCESS_AUDIT_URL": fake_url,
        "SLUICE_ACCESS_BOOTSTRAP_CLIENT_ID": OPERATOR,
        "SLUICE_ACCESS_BOOTSTRAP_CLIENT_SECRET": OPERATOR_SECRET,
        "SLUICE_ACCESS_BOOTSTRAP_SERVICE_CLIENTS": f'{{"{ORDERS}": "{ORDERS_SECRET}"}}',
        "SLUICE_ACCESS_LOG_LEVEL": "WARNING",
    }


async def token(http: httpx.AsyncClient, client_id: str, secret: str) -> str:
    resp = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client_id, secret))
    resp.raise_for_status()
    return str(resp.json()["access_token"])


async def setup_deal(http: httpx.AsyncClient, fake: FakeCatalog) -> tuple[str, str]:
    """Onboard a provider and a buyer, list a product, grant an entitlement;
    return (buyer token, entitlement id)."""
    op = {"Authorization": f"Bearer {await token(http, OPERATOR, OPERATOR_SECRET)}"}
    orgs = {}
    for role in ("provider", "buyer"):
        resp = await http.post("/v1/organisations", headers=op,
                               json={"name": f"bench {role} {secrets.token_hex(3)}", "roles": [role]})
        resp.raise_for_status()
        orgs[role] = resp.json()["id"]
    resp = await http.post(f"/v1/organisations/{orgs['buyer']}/clients", headers=op,
                           json={"name": "bench buyer"})
    resp.raise_for_status()
    buyer_token = await token(http, resp.json()["client_id"], resp.json()["client_secret"])
    product = fake.add_product(orgs["provider"], plans=[plan(query_quota=None)])
    svc = {"Authorization": f"Bearer {await token(http, ORDERS, ORDERS_SECRET)}"}
    now = datetime.now(UTC)
    resp = await http.post("/v1/entitlements", headers=svc, json={
        "order_id": "ord_bench_" + secrets.token_hex(4), "buyer_org": orgs["buyer"],
        "product_id": product, "version": 1, "plan_id": "plan_monthly", "purpose": "research",
        "valid_from": now.isoformat(), "valid_until": (now + timedelta(days=30)).isoformat()})
    resp.raise_for_status()
    return buyer_token, str(resp.json()["id"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn's workers), from /proc: what
    the server spent, however loaded the machine is (wall-clock rates are not, on a shared box)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def raw_sign(n: int) -> tuple[float, float]:
    """python-jose signing the same claims with a key built once: (wall, CPU) seconds."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key = jwk.construct(pem, "RS256")
    now = int(time.time())
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        claims = {"iss": "http://127.0.0.1:8003", "sub": "cli_bench", "aud": "http://127.0.0.1:8010",
                  "exp": now + 900, "iat": now, "jti": secrets.token_urlsafe(18),
                  "client_id": "cli_bench", "scope": "query", "org": "org_bench",
                  "ent": f"ent_{i}", "product": "prd_bench", "version": 1, "purpose": "research",
                  "grade": "L3_sensitive",
                  "limits": {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0,
                             "query_quota": None}}
        jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench", "typ": "at+jwt"})
    return time.perf_counter() - t0, time.process_time() - c0


async def measure(report: Report, backend: str, workers: int, args: argparse.Namespace,
                  fake: FakeCatalog, fake_port: int, tmp: Path, one: float | None) -> float | None:
    name = f"{db_prefix('sl_access')}_bench"
    database_url = (await recreate_pg(name) if backend == "postgresql"
                    else f"sqlite+aiosqlite:///{tmp / f'access-{workers}.db'}")
    upgrade(ROOT / "services" / "access" / "migrations", database_url)
    port = free_port()
    env = access_env(port, database_url, f"http://127.0.0.1:{fake_port}")
    try:
        with running(Server.service("access", env, workers=workers, port=port)) as server:
            await server.wait_ready("/readyz")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                buyer, ent = await setup_deal(http, fake)
            request = format_request("POST", f"/v1/entitlements/{ent}/tokens",
                                     {"Authorization": f"Bearer {buyer}"})
            await run_load_async(port, [request], seconds=1, connections=2)  # warm-up
            cpu0 = cpu_seconds(server.proc.pid)
            result = await run_load_async(port, [request], seconds=args.seconds, connections=args.concurrency)
            server_cpu = cpu_seconds(server.proc.pid) - cpu0
            if result.errors:
                raise RuntimeError(f"{result.errors} token requests failed:\n{server.tail()}")
    finally:
        if backend == "postgresql":
            await drop_pg(name)
    wall, cpu = raw_sign(args.sign_tokens)
    raw_rate = args.sign_tokens / wall
    # CPU per token (server, all its processes; and the raw sign): comparable across loads.
    cpu_us = {"server_cpu_us_per_token": round(server_cpu / max(1, result.requests) * 1e6),
              "raw_sign_cpu_us_per_token": round(cpu / args.sign_tokens * 1e6)}
    print(f"  server CPU {cpu_us['server_cpu_us_per_token']} µs/token, raw sign CPU "
          f"{cpu_us['raw_sign_cpu_us_per_token']} µs/token ({workers} worker(s))", flush=True)
    path = "access: data-access token issue over HTTP"
    if workers == 1:
        report.row(path, figure=result.rps, unit="tokens/s", limit=round(raw_rate),
                   limit_label="raw python-jose RS256 sign", min_ratio=0.40, backend=backend,
                   loadgen=result.tool, details={"load": result.as_dict(), **cpu_us})
    else:
        report.row(path, figure=result.rps, unit="tokens/s", limit=one, limit_label="1 worker, same run",
                   backend=backend, workers=workers, loadgen=result.tool,
                   details={"load": result.as_dict(), "raw_sign_per_s": round(raw_rate), **cpu_us})
    return result.rps


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sign-tokens", type=int, default=2000, help="tokens signed for the raw rate")
    parser.add_argument("--backends", default=",".join(backends()))
    parser.add_argument("--no-workers2", dest="workers2", action="store_false", help="skip the 2-worker run")
    args = parser.parse_args()
    report = Report("access")
    fake = FakeCatalog()
    fake_port = free_port()
    server = start_fake(fake, fake_port)
    try:
        with tempfile.TemporaryDirectory(prefix="sl_access_bench") as tmp:
            for backend in args.backends.split(","):
                one = None
                for workers in (1, 2) if args.workers2 else (1,):
                    try:
                        one = await measure(report, backend, workers, args, fake, fake_port, Path(tmp), one)
                    except Exception:
                        report.failed("access: data-access token issue over HTTP", "tokens/s",
                                      traceback.format_exc(), backend=backend, workers=workers)
    finally:
        server.should_exit = True
        report.save()


if __name__ == "__main__":
    asyncio.run(main())
