"""Orders benchmark: free-plan orders over HTTP against a bare single-row insert.

    .venv/bin/python bench/bench_orders.py                  # PostgreSQL (BENCH_BACKENDS), 8 s runs
    .venv/bin/python bench/bench_orders.py --seconds 4 --no-workers2

The orders service runs as ``python -m services.orders serve --workers N`` (1, then 2); the
catalog's internal API, the access entitlements endpoint, the audit sink, the JWKS and the
token endpoint are the test suite's fakes, served from this process over HTTP. Each order is a
full ``POST /v1/orders`` (token, idempotency, quote checks, catalog call, order + audit event +
``paid`` transition + grant command in one transaction) while the fulfilment and audit relays
run, as in production.

Quotes: ``POST /v1/quotes`` is measured over HTTP first (a row of its own); the orders then
use copies of one of those quotes made in SQL (ids ``qb_<n>``), so the order run is not
limited by how many quotes the quote run made. The limit, measured in the same run: a bare
single-row INSERT (one row per transaction, same concurrency) into the same database.

After the order run the bench waits until the relays have delivered everything the orders left
in the outbox (grants, fulfilments, audit events), and reports the server's CPU per order with
that work included, PostgreSQL's CPU per order and this process's (the stand-ins): one worker
serves the load first, so most of an order's relay work runs after the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI, Request  # module level: the stand-ins' annotations resolve here
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.bench_access import cpu_seconds
from bench.bench_audit import CpuMeter
from bench.common import Server, backends, db_prefix, drop_pg, free_port, recreate_pg, running
from bench.load import format_request, run_load_async
from bench.report import Report
from shared.migrations import upgrade
from tests.support import TestKeys, migrations_dir

MAIN_FIRST = 1_000_001  # quote numbers of the measured run (the warm-up uses 1, 2, ...)


async def timed(concurrency: int, jobs: list[Any]) -> float:
    """Run coroutine factories with bounded concurrency; return the seconds taken."""
    sem = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> None:
        async with sem:
            await job()

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - start


async def bare_inserts(url: str, n: int, concurrency: int) -> float:
    """The limit: one 200-byte row per transaction, ``concurrency`` at a time."""
    engine = create_async_engine(url, pool_size=concurrency, max_overflow=0)
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

        await timed(concurrency, [job() for _ in range(min(200, n))])  # warm the pool
        seconds = await timed(concurrency, [job() for _ in range(n)])
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE bench_bare"))
        return n / seconds
    finally:
        await engine.dispose()


def fakes_app(keys: TestKeys) -> Any:
    """Catalog + access + audit stand-ins and a JWKS, served over HTTP for the worker processes."""
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


def start_fakes(keys: TestKeys) -> tuple[Any, int]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fakes_app(keys), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


async def clone_quotes(url: str, first: int, count: int) -> None:
    """``count`` copies of one quote made over HTTP, ids ``qb_<12 hex digits>`` from ``first``."""
    from services.orders.models import Quote

    cols = [c.name for c in Quote.__table__.columns]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            template = (await conn.execute(text("SELECT id FROM quotes LIMIT 1"))).scalar_one()
            ids = [f"qb_{n:012x}" for n in range(first, first + count)]
            select_cols = ", ".join("new_id" if c == "id" else c for c in cols)
            if engine.dialect.name == "postgresql":
                await conn.execute(text(
                    f"INSERT INTO quotes ({', '.join(cols)}) SELECT {select_cols} FROM quotes, "
                    "unnest(CAST(:ids AS varchar[])) AS new_id WHERE quotes.id = :template"),
                    {"ids": ids, "template": template})
            else:
                for start in range(0, count, 500):
                    chunk = ids[start:start + 500]
                    marks = ", ".join(f"(:i{j})" for j in range(len(chunk)))
                    await conn.execute(text(
                        f"WITH n(new_id) AS (VALUES {marks}) INSERT INTO quotes ({', '.join(cols)}) "
                        f"SELECT {select_cols} FROM quotes, n WHERE quotes.id = :template"),
                        {**{f"i{j}": v for j, v in enumerate(chunk)}, "template": template})
    finally:
        await engine.dispose()


async def relay_backlog(url: str) -> dict[str, int]:
    """Outbox rows not yet delivered (nor dead-lettered), by destination."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT destination, count(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL "
                "GROUP BY destination"))).all()
    finally:
        await engine.dispose()
    return {str(d): int(n) for d, n in rows}


async def drained(url: str, within: float = 180.0) -> float:
    """Wait until the relays have delivered every outbox row; the seconds it took. An order's
    relay work (its grant to access, its fulfilment, its four audit events) mostly runs after
    the load stops: one worker's event loop serves the 32 connections first."""
    start = time.perf_counter()
    while await relay_backlog(url):
        if time.perf_counter() - start > within:
            raise RuntimeError(f"the relays did not drain the outbox within {within:.0f} s")
        await asyncio.sleep(0.25)
    return time.perf_counter() - start


async def measure(report: Report, backend: str, workers: int, args: argparse.Namespace, keys: TestKeys,
                  tmp: Path, one: dict[str, float]) -> None:
    name = f"{db_prefix('sl_orders')}_bench"
    url = await recreate_pg(name) if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp}/orders-{workers}.db"
    upgrade(migrations_dir("orders"), url)
    fakes, fport = start_fakes(keys)
    base = f"http://127.0.0.1:{fport}"
    env: dict[str, str | None] = {
        "SLUICE_ORDERS_DATABASE_URL": url, "SLUICE_ORDERS_CATALOG_URL": base,
        "SLUICE_ORDERS_ACCESS_URL": base,
        "SLUICE_ORDERS_AUDIT_URL": base, "SLUICE_ORDERS_TOKEN_ISSUER": base,
        "SLUICE_ORDERS_SERVICE_CLIENT_SECRET": "bench", "SLUICE_ORDERS_RECONCILE_INTERVAL_SECONDS": "0",
        "SLUICE_ORDERS_LOG_LEVEL": "WARNING"}
    token = keys.token(roles=["buyer"], org="org_buyer_a", sub="cli_bench", iss=base)
    auth = {"Authorization": f"Bearer {token}"}
    quote_req = format_request("POST", "/v1/quotes", auth,
                               b'{"product_id": "prd_mobility", "version": 1, "plan_id": "plan_free"}')
    order_req = format_request("POST", "/v1/orders", {**auth, "Idempotency-Key": "k-@@@@@@@@@@@@"},
                               b'{"quote_id": "qb_@@@@@@@@@@@@", "purpose": "research"}')
    try:
        with running(Server.service("orders", env, workers=workers)) as server:
            await server.wait_ready("/readyz")
            await run_load_async(server.port, [quote_req], seconds=1, connections=4)
            cpu0 = cpu_seconds(server.proc.pid)
            quotes = await run_load_async(server.port, [quote_req], seconds=args.seconds / 2,
                                          connections=args.concurrency)
            quote_cpu = cpu_seconds(server.proc.pid) - cpu0
            await clone_quotes(url, 1, 5_000)
            await clone_quotes(url, MAIN_FIRST, args.quotes)
            await run_load_async(server.port, [order_req], seconds=1, connections=4)
            await drained(url)  # the warm-up's relay work is not the measured orders'
            meter = CpuMeter(server, url)
            await meter.start()
            cpu0, bench0 = cpu_seconds(server.proc.pid), time.process_time()
            orders = await run_load_async(server.port, [order_req], seconds=args.seconds,
                                          connections=args.concurrency, first_number=MAIN_FIRST)
            # The server's CPU (all its processes; the relays' work for these orders included
            # as far as it ran within the run): comparable across machine loads, unlike rates.
            order_cpu = cpu_seconds(server.proc.pid) - cpu0
            backlog = await relay_backlog(url)
            # Then until the relays have done everything the orders left them: the whole cost
            # of an order. And what else it costs the same two cores: the PostgreSQL backends
            # serving this database, and this process (the access, catalog and audit stand-ins
            # the relays call; the load generator's own Python when wrk is absent).
            drain_s = await drained(url)
            full_cpu = cpu_seconds(server.proc.pid) - cpu0
            bench_cpu = time.process_time() - bench0
            await meter.stop()
            if quotes.errors or orders.errors:
                raise RuntimeError(f"{quotes.errors} quotes and {orders.errors} orders failed:\n"
                                   f"{server.tail()}")
            if orders.requests > args.quotes:
                raise RuntimeError(f"{orders.requests} orders but only {args.quotes} quotes: raise --quotes")
        bare = await bare_inserts(url, args.bare_rows, args.concurrency)
    finally:
        fakes.should_exit = True
        if backend == "postgresql":
            await drop_pg(name)
    n = max(1, orders.requests)
    run_s = orders.requests / orders.rps if orders.rps else float(args.seconds)
    cpu_us = {"server_cpu_us_per_order": round(order_cpu / n * 1e6),
              "server_cpu_us_per_quote": round(quote_cpu / max(1, quotes.requests) * 1e6),
              "server_cpu_us_per_order_relays_included": round(full_cpu / n * 1e6),
              "postgres_cpu_us_per_order": round(meter.pg_s / n * 1e6) if meter.pg_s else None,
              "bench_process_cpu_us_per_order": round(bench_cpu / n * 1e6),
              "outbox_backlog_at_end": backlog, "relay_drain_seconds": round(drain_s, 2),
              "orders_per_s_relays_included": round(n / (run_s + drain_s), 1)}
    print(f"  server CPU {cpu_us['server_cpu_us_per_order']} µs/order, "
          f"{cpu_us['server_cpu_us_per_quote']} µs/quote ({workers} worker(s), {backend}); "
          f"at the run's end the outbox held {backlog}, drained {drain_s:.1f} s later: per order, "
          f"relays included, server {cpu_us['server_cpu_us_per_order_relays_included']} µs, "
          f"PostgreSQL {cpu_us['postgres_cpu_us_per_order']} µs, stand-ins + load generator "
          f"{cpu_us['bench_process_cpu_us_per_order']} µs; {cpu_us['orders_per_s_relays_included']} "
          "orders/s relays included", flush=True)
    details = {"orders": orders.as_dict(), "quotes": quotes.as_dict(), "bare_inserts_per_s": round(bare),
               **cpu_us}
    if workers == 1:
        one.update(orders=orders.rps, quotes=quotes.rps)
        report.row("orders: free-plan order over HTTP", figure=orders.rps, unit="orders/s", limit=round(bare),
                   limit_label="bare single-row INSERT, same concurrency", min_figure=500, min_ratio=0.30,
                   backend=backend, loadgen=orders.tool, details=details)
        # The row above is the request path: each order answered once it and its grant command
        # are committed, the relays' work (grant, fulfilment, audit) left queued. This one counts
        # the same orders until the relays have finished them: the rate it could be sustained at.
        report.row("orders: free-plan order, fulfilled (relays included)",
                   figure=cpu_us["orders_per_s_relays_included"], unit="orders/s", limit=round(bare),
                   limit_label="bare single-row INSERT, same concurrency", backend=backend,
                   loadgen=orders.tool, details=details)
        report.row("orders: free-plan quote over HTTP", figure=quotes.rps, unit="quotes/s", limit=round(bare),
                   limit_label="bare single-row INSERT, same concurrency", backend=backend,
                   loadgen=quotes.tool, details=details)
    else:
        report.row("orders: free-plan order over HTTP", figure=orders.rps, unit="orders/s",
                   limit=one.get("orders"), limit_label="1 worker, same run", backend=backend,
                   workers=workers, loadgen=orders.tool, details=details)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--quotes", type=int, default=30_000, help="quote copies for the measured order run")
    p.add_argument("--bare-rows", type=int, default=3000)
    p.add_argument("--backends", default=",".join(backends()))
    p.add_argument("--no-workers2", dest="workers2", action="store_false", help="skip the 2-worker run")
    args = p.parse_args()
    logging.disable(logging.WARNING)
    report = Report("orders")
    keys = TestKeys.generate()
    one: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in args.backends.split(","):
                for workers in (1, 2) if args.workers2 else (1,):
                    try:
                        await measure(report, backend, workers, args, keys, Path(tmp), one)
                    except Exception:
                        report.failed("orders: free-plan order over HTTP", "orders/s", traceback.format_exc(),
                                      backend=backend, workers=workers)
    finally:
        report.save()


if __name__ == "__main__":
    asyncio.run(main())
