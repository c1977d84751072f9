"""Orders benchmark: free-plan orders/s and quotes/s on SQLite and PostgreSQL.

Runs the orders app in-process (one process, one event loop: one core's worth)
with the catalog and access services served by the in-process fakes of the test
suite, so the figures measure the orders service and its database, not the
network. Each order is a full ``POST /v1/orders``: token verification, quote
checks, catalog call, order + quote + audit event + ledger-free ``paid``
transition + grant command in one transaction. The fulfilment relay runs at the
same time (as in production). It also measures the bare insert rate of the same
database (one row per transaction, same concurrency) to give the ratio.

    .venv/bin/python bench/bench_orders.py            # ~500 orders per back end
    .venv/bin/python bench/bench_orders.py --full     # 5000
    SLUICE_BENCH_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/x ...  # PostgreSQL
    (falls back to SLUICE_TEST_POSTGRES_URL; PostgreSQL is skipped when neither is set)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Read before importing the test support, which clears SLUICE_* variables.
PG_URL = os.environ.get("SLUICE_BENCH_POSTGRES_URL") or os.environ.get("SLUICE_TEST_POSTGRES_URL", "")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from shared.migrations import upgrade  # noqa: E402
from tests.orders.conftest import start_orders  # noqa: E402
from tests.support import TestKeys, migrations_dir, pg_url, recreate_pg_database  # noqa: E402

DB_PREFIX = os.environ.get("SLUICE_BENCH_DB_PREFIX", "sl_orders")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def timed(concurrency: int, jobs: list[Any]) -> tuple[float, list[float]]:
    """Run coroutine factories with bounded concurrency; return (seconds, latencies)."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(job: Any) -> None:
        async with sem:
            t = time.perf_counter()
            await job()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - start, latencies


async def bare_inserts(url: str, n: int, concurrency: int) -> float:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS bench_bare"))
            await conn.execute(text("CREATE TABLE bench_bare (id VARCHAR(40) PRIMARY KEY, body TEXT)"))

        def job() -> Any:
            async def run() -> None:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO bench_bare VALUES (:id, :body)"),
                                       {"id": uuid.uuid4().hex, "body": "x" * 200})
            return run

        seconds, _ = await timed(concurrency, [job() for _ in range(n)])
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE bench_bare"))
        return n / seconds
    finally:
        await engine.dispose()


async def run_backend(name: str, url: str, n: int, concurrency: int) -> dict[str, float]:
    upgrade(migrations_dir("orders"), url)
    keys = TestKeys.generate()
    async with start_orders(url, keys, "http://127.0.0.1:9") as h:
        headers = h.buyer()
        quotes: list[str] = []

        def quote_job() -> Any:
            async def run() -> None:
                resp = await h.client.post("/v1/quotes", headers=headers, json={
                    "product_id": "prd_mobility", "version": 1, "plan_id": "plan_free"})
                assert resp.status_code == 201, resp.text
                quotes.append(resp.json()["id"])
            return run

        q_seconds, q_lat = await timed(concurrency, [quote_job() for _ in range(n)])

        def order_job(quote_id: str) -> Any:
            async def run() -> None:
                resp = await h.client.post(
                    "/v1/orders", json={"quote_id": quote_id, "purpose": "research"},
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
                assert resp.status_code == 201, resp.text
            return run

        o_seconds, o_lat = await timed(concurrency, [order_job(q) for q in quotes])
    bare = await bare_inserts(url, n, concurrency)
    orders_per_s = n / o_seconds
    result = {"orders_per_s": orders_per_s, "order_p50_ms": pct(o_lat, 50), "order_p99_ms": pct(o_lat, 99),
              "quotes_per_s": n / q_seconds, "quote_p50_ms": pct(q_lat, 50), "quote_p99_ms": pct(q_lat, 99),
              "bare_inserts_per_s": bare, "ratio_to_bare": orders_per_s / bare}
    print(f"{name:10s} " + "  ".join(f"{k}={v:.2f}" for k, v in result.items()), flush=True)
    return result


def fakes_app(keys: TestKeys) -> Any:
    """Catalog + access + audit stand-ins and a JWKS, served over HTTP for the worker processes."""
    from fastapi import FastAPI, Request

    from tests.orders.fakes import SERVICE_TOKEN, FakeAccess, FakeCatalog, product_version

    catalog, access = FakeCatalog(), FakeAccess()
    catalog.add(product_version())
    app = FastAPI()
    app.router.routes.extend(catalog.app.router.routes)
    app.router.routes.extend(access.app.router.routes)

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return {"keys": [keys.public_jwk]}

    @app.post("/oauth/token")
    async def token() -> dict[str, Any]:
        return {"access_token": SERVICE_TOKEN, "token_type": "Bearer", "expires_in": 900}

    @app.post("/v1/events")
    async def events(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"results": [{"event_id": e["event_id"], "seq": 0} for e in body["events"]]}

    return app


async def run_workers(name: str, url: str, n: int, concurrency: int, workers: int) -> None:
    """The orders service as `serve --workers N` (separate processes) against fakes over HTTP."""
    import httpx
    import uvicorn

    from tests.orders.conftest import free_port

    upgrade(migrations_dir("orders"), url)
    keys = TestKeys.generate()
    fport, oport = free_port(), free_port()
    fakes = f"http://127.0.0.1:{fport}"
    server = uvicorn.Server(uvicorn.Config(fakes_app(keys), host="127.0.0.1", port=fport,
                                           log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    env = {**os.environ, "SLUICE_ORDERS_DATABASE_URL": url, "SLUICE_ORDERS_CATALOG_URL": fakes,
           "SLUICE_ORDERS_ACCESS_URL": fakes, "SLUICE_ORDERS_AUDIT_URL": fakes,
           "SLUICE_ORDERS_TOKEN_ISSUER": fakes, "SLUICE_ORDERS_SERVICE_CLIENT_SECRET": "bench",
           "SLUICE_ORDERS_RECONCILE_INTERVAL_SECONDS": "0", "SLUICE_ORDERS_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orders", "serve", "--port", str(oport), "--workers", str(workers),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{oport}"
    try:
        token = keys.token(roles=["buyer"], org="org_buyer_a", sub="cli_bench", iss=fakes)
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            for _ in range(200):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            quotes: list[str] = []

            def quote_job() -> Any:
                async def run() -> None:
                    resp = await client.post("/v1/quotes", headers=headers, json={
                        "product_id": "prd_mobility", "version": 1, "plan_id": "plan_free"})
                    assert resp.status_code == 201, resp.text
                    quotes.append(resp.json()["id"])
                return run

            q_seconds, q_lat = await timed(concurrency, [quote_job() for _ in range(n)])

            def order_job(quote_id: str) -> Any:
                async def run() -> None:
                    resp = await client.post("/v1/orders", json={"quote_id": quote_id, "purpose": "research"},
                                             headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
                    assert resp.status_code == 201, resp.text
                return run

            o_seconds, o_lat = await timed(concurrency, [order_job(q) for q in quotes])
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=15)
        server.should_exit = True
        await serving
    bare = await bare_inserts(url, n, concurrency)
    print(f"{name:10s} workers={workers} orders_per_s={n / o_seconds:.2f} order_p50_ms={pct(o_lat, 50):.2f} "
          f"order_p99_ms={pct(o_lat, 99):.2f} quotes_per_s={n / q_seconds:.2f} "
          f"quote_p50_ms={pct(q_lat, 50):.2f} quote_p99_ms={pct(q_lat, 99):.2f} "
          f"bare_inserts_per_s={bare:.2f} ratio_to_bare={n / o_seconds / bare:.2f}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="5000 orders per back end instead of 500")
    parser.add_argument("-n", type=int, default=0, help="orders per back end")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0,
                        help="also run `serve --workers N` over HTTP (0: in-process only)")
    args = parser.parse_args()
    n = args.n or (5000 if args.full else 500)
    logging.disable(logging.WARNING)
    print(f"orders benchmark: {n} free-plan orders and quotes per back end, concurrency {args.concurrency}, "
          f"one process ({os.cpu_count()} cores on this machine)")
    with tempfile.TemporaryDirectory() as tmp:
        await run_backend("sqlite", f"sqlite+aiosqlite:///{tmp}/bench-orders.db", n, args.concurrency)
    pg = PG_URL
    if pg:
        import tests.support as support

        support.POSTGRES_URL = pg
        url = recreate_pg_database(f"{DB_PREFIX}_bench")
        assert url == pg_url(f"{DB_PREFIX}_bench")
        await run_backend("postgresql", url, n, args.concurrency)
        if args.workers:
            url = recreate_pg_database(f"{DB_PREFIX}_bench")
            await run_workers("postgresql", url, n, args.concurrency, args.workers)
    else:
        print("postgresql skipped (set SLUICE_BENCH_POSTGRES_URL)")


if __name__ == "__main__":
    asyncio.run(main())
