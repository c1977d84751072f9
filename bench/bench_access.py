"""Access benchmark (printed, never asserted): data-access token issue rate.

Issues RFC 9068 data-access tokens with ``POST /v1/entitlements/{id}/tokens``
over HTTP against a real uvicorn process of the access service (every request
verifies the buyer's platform token, re-checks the entitlement, both
organisations, counters, usage policy and the product's catalog status, signs,
and writes an audit event through the outbox), and compares it with a raw
python-jose ``jwt.encode`` of the same claims with a pre-built key, in the same
run. The catalog's internal API and the audit sink are a small in-process fake.

    .venv/bin/python bench/bench_access.py                       # 500 tokens, 8 at a time
    .venv/bin/python bench/bench_access.py --tokens 3000 --concurrency 32
    BENCH_FULL=1 .venv/bin/python bench/bench_access.py          # 5000 tokens
    .venv/bin/python bench/bench_access.py \
        --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres   # DB sl_access_bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.access.fake_catalog` lives beside the packages

from shared.migrations import upgrade  # noqa: E402
from tests.access.fake_catalog import FakeCatalog, plan  # noqa: E402

OPERATOR, OPERATOR_SECRET = "bench-operator", "bench-operator-secret"
ORDERS, ORDERS_SECRET = "svc-orders", "bench-orders-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def recreate_pg(server_url: str, name: str) -> str:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def start_access(port: int, database_url: str, fake_url: str, factory: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "SLUICE_ACCESS_DATABASE_URL": database_url,
        "SLUICE_ACCESS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SLUICE_ACCESS_CATALOG_URL": fake_url,
        "SLUICE_ACCESS_AUDIT_URL": fake_url,
        "SLUICE_ACCESS_BOOTSTRAP_CLIENT_ID": OPERATOR,
        "SLUICE_ACCESS_BOOTSTRAP_CLIENT_SECRET": OPERATOR_SECRET,
        "SLUICE_ACCESS_BOOTSTRAP_SERVICE_CLIENTS": f'{{"{ORDERS}": "{ORDERS_SECRET}"}}',
        "SLUICE_ACCESS_LOG_LEVEL": "WARNING",
    })
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )


async def wait_ready(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the access process exited with {proc.returncode}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the access service did not become ready in 30 s")


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


async def issue_over_http(http: httpx.AsyncClient, buyer: str, ent: str, n: int,
                          concurrency: int) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {buyer}"}
    url = f"/v1/entitlements/{ent}/tokens"
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            resp = await http.post(url, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if resp.status_code != 201:
                raise SystemExit(f"token issue failed: {resp.status_code} {resp.text[:300]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


def raw_sign(n: int) -> float:
    """python-jose signing the same claims with a key built once."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key = jwk.construct(pem, "RS256")
    now = int(time.time())
    t0 = time.perf_counter()
    for i in range(n):
        claims = {"iss": "http://127.0.0.1:8003", "sub": "cli_bench", "aud": "http://127.0.0.1:8010",
                  "exp": now + 900, "iat": now, "jti": secrets.token_urlsafe(18),
                  "client_id": "cli_bench", "scope": "query", "org": "org_bench",
                  "ent": f"ent_{i}", "product": "prd_bench", "version": 1, "purpose": "research",
                  "grade": "L3_sensitive",
                  "limits": {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0,
                             "query_quota": None}}
        jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench", "typ": "at+jwt"})
    return time.perf_counter() - t0


async def main() -> None:
    full = os.environ.get("BENCH_FULL") == "1"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=5000 if full else 500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres", help="PostgreSQL server URL; the bench recreates sl_access_bench")
    parser.add_argument("--app", default="services.access.app:create_app",
                        help="app factory for uvicorn --factory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sl_access_bench") as tmp:
        if args.postgres:
            database_url = await recreate_pg(args.postgres, "sl_access_bench")
        else:
            database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'access.db'}"
        upgrade(ROOT / "services" / "access" / "migrations", database_url)
        fake = FakeCatalog()
        fake_port, access_port = free_port(), free_port()
        server = start_fake(fake, fake_port)
        proc = start_access(access_port, database_url, f"http://127.0.0.1:{fake_port}", args.app)
        try:
            limits = httpx.Limits(max_connections=args.concurrency * 2)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{access_port}", timeout=30,
                                         limits=limits) as http:
                await wait_ready(http, proc)
                buyer, ent = await setup_deal(http, fake)
                await issue_over_http(http, buyer, ent, min(50, args.tokens), args.concurrency)
                elapsed, latencies = await issue_over_http(http, buyer, ent, args.tokens,
                                                           args.concurrency)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            server.should_exit = True
    raw = raw_sign(args.tokens)
    http_rate, raw_rate = args.tokens / elapsed, args.tokens / raw
    latencies.sort()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"data-access token issue over HTTP ({backend}, 1 uvicorn worker, "
          f"concurrency {args.concurrency}): {args.tokens} tokens in {elapsed:.2f} s = "
          f"{http_rate:,.0f} tokens/s; latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
    print(f"raw python-jose RS256 sign, pre-built key: {raw_rate:,.0f} tokens/s")
    print(f"HTTP issue rate is {http_rate / raw_rate:.1%} of raw signing")


if __name__ == "__main__":
    asyncio.run(main())
