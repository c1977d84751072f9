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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="5000 orders per back end instead of 500")
    parser.add_argument("-n", type=int, default=0, help="orders per back end")
    parser.add_argument("--concurrency", type=int, default=32)
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
    else:
        print("postgresql skipped (set SLUICE_BENCH_POSTGRES_URL)")


if __name__ == "__main__":
    asyncio.run(main())
