"""Catalog benchmark: search latency per query class, product GET and token checks against
their limits, on a large generated catalog.

    .venv/bin/python bench/bench_catalog.py                  # 100k products (quick)
    BENCH_FULL=1 .venv/bin/python bench/bench_catalog.py     # 100k, then 1M products
    .venv/bin/python bench/bench_catalog.py --products 20000 --seconds 3

Per back end (``BENCH_BACKENDS``, default PostgreSQL; database ``<prefix>_bench`` on
SLUICE_BENCH_POSTGRES_URL, prefix ``sl_catalog``; SQLite: a temp file) and catalog size:

1. a fresh database, migrated, bulk-loaded with generated listed products (one published
   version each, 2-4 tags, 1-2 plans; ``bench/catalog_data.py``);
2. the catalog as a real uvicorn process, and **the limit**: a bare FastAPI app (uvicorn, one
   worker) whose ``GET /bare/product`` returns the very JSON the catalog returns for a product
   (it also serves the JWKS the catalog verifies tokens with);
3. with the load generator (``bench/load.py``; wrk, or Python in its own process): search per
   query class (4 connections), product GET of one hot product and uniformly over the catalog
   with the public-view cache off (16 connections), each beside the bare endpoint measured
   right after it; the token check (``/v1/me`` beside ``/healthz`` on the same service);
   then the same with ``serve --workers 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_access import cpu_seconds
from bench.catalog_data import CATEGORIES, GRADES, WORDS, load, settle
from bench.common import (
    ROOT,
    Keys,
    Server,
    backends,
    db_prefix,
    drop_pg,
    existing_pg,
    free_port,
    full,
    http_request,
    recreate_pg,
    running,
)
from bench.load import LoadResult, format_request, run_load_async, run_pair_async
from bench.report import Report

SCRIPT = str(Path(__file__).resolve())


def serve_bare(port: int, state_dir: Path) -> None:
    """The limit: a bare FastAPI endpoint returning the same JSON (plus the bench JWKS)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    cache: dict[str, Any] = {}

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return {"keys": [json.loads((state_dir / "jwk.json").read_text())]}

    @app.get("/bare/product")
    async def product() -> dict[str, Any]:
        if "body" not in cache:
            cache["body"] = json.loads((state_dir / "product.json").read_text())
        return cache["body"]  # type: ignore[no-any-return]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def search_paths(rng: random.Random, n: int = 400) -> dict[str, list[str]]:
    """Query classes, each a list of request paths."""
    def q(params: dict[str, Any]) -> str:
        return "/v1/products?" + urlencode(params)

    return {
        "one common word": [q({"q": rng.choice(WORDS)}) for _ in range(n)],
        "two words": [q({"q": f"{rng.choice(WORDS)} {rng.choice(WORDS)}"}) for _ in range(n)],
        "word + category + grade": [q({"q": rng.choice(WORDS), "category": rng.choice(CATEGORIES),
                                       "grade": rng.choice(GRADES)}) for _ in range(n)],
        "category, newest first": [q({"category": rng.choice(CATEGORIES), "sort": "newest"})
                                   for _ in range(n)],
        "tag + max price, by price": [q({"tag": rng.choice(WORDS), "max_price": 20000, "currency": "EUR",
                                         "sort": "price"}) for _ in range(n)],
        "browse all, newest first": [q({"sort": "newest"}) for _ in range(n)],
    }


def catalog_env(url: str, bare_port: int, **extra: str) -> dict[str, str | None]:
    return {
        "SLUICE_CATALOG_DATABASE_URL": url,
        "SLUICE_CATALOG_JWKS_URL": f"http://127.0.0.1:{bare_port}/.well-known/jwks.json",
        "SLUICE_CATALOG_TOKEN_ISSUER": "http://bench-issuer",
        "SLUICE_CATALOG_LOG_LEVEL": "WARNING",
        **extra,
    }


class Ctx:
    """What one catalog size's measurements share."""

    def __init__(self, report: Report, backend: str, n: int, args: argparse.Namespace, token: str,
                 bare_port: int) -> None:
        self.report, self.backend, self.n, self.args = report, backend, n, args
        self.auth = {"Authorization": f"Bearer {token}"}
        self.bare_port = bare_port
        self.bare_pid = 0

    def gets(self, paths: list[str], auth: bool = True) -> list[bytes]:
        return [format_request("GET", p, self.auth if auth else {}) for p in paths]

    async def load(self, port: int, paths: list[str], *, seconds: float, connections: int,
                   auth: bool = True, order: str = "random") -> LoadResult:
        result = await run_load_async(port, self.gets(paths, auth), seconds=seconds,
                                      connections=connections, order=order)
        if result.errors:
            raise RuntimeError(f"{result.errors} of {result.requests} requests failed on port {port}")
        return result

    async def versus(self, port: int, paths: list[str], limit_port: int, limit_paths: list[str],
                     limit_auth: bool, *, seconds: float) -> tuple[LoadResult, LoadResult]:
        """A path and its limit in alternating rounds (bench.load.run_pair_async)."""
        a, b = await run_pair_async(
            (port, self.gets(paths)), (limit_port, self.gets(limit_paths, limit_auth)),
            seconds=seconds, connections=self.args.get_concurrency, order="random")
        if a.errors or b.errors:
            raise RuntimeError(f"{a.errors} and {b.errors} requests failed")
        return a, b

    def row(self, path: str, **kwargs: Any) -> None:
        self.report.row(path, backend=self.backend, **kwargs)


async def measure_searches(ctx: Ctx, port: int, workers: int) -> None:
    target = 50.0 if ctx.n <= 100_000 else 100.0
    every: list[str] = []
    for kind, paths in search_paths(random.Random(2)).items():
        every += paths
        if workers != 1:
            continue
        # Warm-up, as for the GET rows: the first requests of a class on a fresh process open pool
        # connections and prepare its statements (one-time costs that are not the steady state).
        await ctx.load(port, paths, seconds=1, connections=ctx.args.search_concurrency)
        # Each class's p99 over ~10 s (≈ 3-4k requests): over 3 s (~1,100 requests) the p99 was
        # the ~11th slowest request, so one ~100 ms stall anywhere on the box (seen once per
        # quiet run, in a different class each time, p50 and p90 unchanged) decided the row.
        r = await ctx.load(port, paths, seconds=ctx.args.search_seconds,
                           connections=ctx.args.search_concurrency)
        ctx.row(f"catalog: search at {ctx.n:,}, {kind}, p99", figure=r.p99_ms, unit="ms", max_figure=target,
                loadgen=r.tool, details={"load": r.as_dict()})
    r = await ctx.load(port, every, seconds=ctx.args.seconds, connections=ctx.args.search_concurrency)
    ctx.row(f"catalog: search at {ctx.n:,}, all classes mixed, p99", figure=r.p99_ms, unit="ms",
            max_figure=target if workers == 1 else None, workers=workers, loadgen=r.tool,
            details={"load": r.as_dict()})


async def measure_gets(ctx: Ctx, port: int, ids: list[str], workers: int, hot: bool, pid: int) -> None:
    paths = [f"/v1/products/{ids[0]}"] if hot else [f"/v1/products/{i}" for i in ids]
    label = "one hot product" if hot else f"uniform over {ctx.n:,} (uncached)"
    cpu0, bare_cpu0 = cpu_seconds(pid), cpu_seconds(ctx.bare_pid)
    r, bare = await ctx.versus(port, paths, ctx.bare_port, ["/bare/product"], False, seconds=ctx.args.seconds)
    # Server CPU per request (from /proc): steadier than req/s on a shared machine.
    cpu_us = (cpu_seconds(pid) - cpu0) / max(1, r.requests) * 1e6
    bare_cpu_us = (cpu_seconds(ctx.bare_pid) - bare_cpu0) / max(1, bare.requests) * 1e6
    cpu_ratio = bare_cpu_us / max(cpu_us, 1e-9)
    ctx.report.note(f"catalog: product GET, {label}, {workers} worker(s): server CPU {cpu_us:,.0f} µs per "
                    f"request, bare FastAPI {bare_cpu_us:,.0f} µs (CPU ratio {cpu_ratio:.2f})")
    ctx.row(f"catalog: product GET, {label}", figure=r.rps, unit="req/s", limit=bare.rps,
            limit_label="bare FastAPI, same JSON",
            min_ratio=(0.80 if hot else 0.50) if workers == 1 else None,
            workers=workers, loadgen=r.tool, details={"load": r.as_dict(), "bare": bare.as_dict(),
                                                      "server_cpu_us_per_request": cpu_us,
                                                      "bare_cpu_us_per_request": bare_cpu_us})


async def measure_token_check(ctx: Ctx, port: int, workers: int) -> None:
    me, healthz = await ctx.versus(port, ["/v1/me"], port, ["/healthz"], False, seconds=ctx.args.seconds)
    ctx.row("platform token check: /v1/me vs /healthz (catalog)", figure=me.rps, unit="req/s",
            limit=healthz.rps, limit_label="/healthz, same service", min_ratio=0.75 if workers == 1 else None,
            workers=workers, loadgen=me.tool, details={"me": me.as_dict(), "healthz": healthz.as_dict()})


async def guarded(ctx: Ctx, path: str, unit: str, coro: Any, **kwargs: Any) -> None:
    try:
        await coro
    except Exception:
        ctx.report.failed(path, unit, traceback.format_exc(), backend=ctx.backend, **kwargs)


async def product_count(url: str) -> int:
    """Products already in the database (``--keep-db`` reuses a loaded catalog)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM products"))).scalar_one())
    finally:
        await engine.dispose()


async def with_engine(url: str, work: Any) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


async def schema_revision(url: str) -> str | None:
    """The catalog database's Alembic revision (None before the first migration)."""
    from sqlalchemy import text

    async def read(engine: Any) -> str | None:
        async with engine.connect() as conn:
            exists = (await conn.execute(text(
                "SELECT 1 FROM information_schema.tables WHERE table_name = 'alembic_version'"))).first()
            if exists is None:
                return None
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()

    return await with_engine(url, read)  # type: ignore[no-any-return]


async def bench_size(ctx: Ctx, url: str, state_dir: Path) -> None:
    from shared.migrations import upgrade

    pg = ctx.backend == "postgresql"
    before = await schema_revision(url) if pg else None
    upgrade(ROOT / "services" / "catalog" / "migrations", url)
    have = await product_count(url)
    if have not in (0, ctx.n):
        raise RuntimeError(f"the kept database holds {have:,} products, not {ctx.n:,}: drop it")
    if have and pg and await schema_revision(url) != before:
        # A kept catalog just migrated (e.g. a new maintained table filled by its migration):
        # settle it as a fresh load is settled, or the first classes pay for it.
        print(f"[{ctx.backend}] migrated the kept catalog ({before} -> head): VACUUM ANALYZE, CHECKPOINT",
              flush=True)
        await with_engine(url, settle)
    if have == 0:
        print(f"[{ctx.backend}] loading {ctx.n:,} products ...", flush=True)
        load_s = await load(url, ctx.n)
        print(f"[{ctx.backend}] loaded in {load_s:.1f}s", flush=True)
    parts = ctx.args.parts
    rng = random.Random(1)
    ids = [f"prd_{i:016x}" for i in rng.sample(range(ctx.n), min(20_000, ctx.n))]
    ids = [i for i in ids if int(i[4:], 16) % 50]  # every 50th product is suspended
    env = catalog_env(url, ctx.bare_port)
    with running(Server.service("catalog", env)) as server:
        await server.wait_ready()
        status, body = await http_request(server.port, "GET", f"/v1/products/{ids[0]}", ctx.auth)
        assert status == 200, body[:300]
        (state_dir / "product.json").write_bytes(body)
        await ctx.load(server.port, [f"/v1/products/{ids[0]}"], seconds=1, connections=4)  # warm-up
        if "search" in parts:
            await guarded(ctx, f"catalog: search at {ctx.n:,}", "ms", measure_searches(ctx, server.port, 1))
        if "hot" in parts:
            await guarded(ctx, "catalog: product GET, one hot product", "req/s",
                          measure_gets(ctx, server.port, ids, 1, hot=True, pid=server.proc.pid))
        if "me" in parts:
            await guarded(ctx, "platform token check", "req/s", measure_token_check(ctx, server.port, 1))
    if "uniform" not in parts:
        return
    uncached = {**env, "SLUICE_CATALOG_PUBLIC_VIEW_CACHE_SECONDS": "0"}
    for workers in (1, 2) if ctx.args.workers2 else (1,):
        with running(Server.service("catalog", uncached, workers=workers)) as server:
            await server.wait_ready()
            await ctx.load(server.port, [f"/v1/products/{i}" for i in ids], seconds=1, connections=4)
            await guarded(ctx, "catalog: product GET, uniform (uncached)", "req/s",
                          measure_gets(ctx, server.port, ids, workers, hot=False, pid=server.proc.pid),
                          workers=workers)
            if workers > 1:
                await guarded(ctx, "catalog: search mixed", "ms", measure_searches(ctx, server.port, workers),
                              workers=workers)
                await guarded(ctx, "platform token check", "req/s",
                              measure_token_check(ctx, server.port, workers), workers=workers)


async def main(args: argparse.Namespace) -> None:
    report = Report("catalog")
    state_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-catalog-"))
    keys = Keys()
    (state_dir / "jwk.json").write_text(json.dumps(keys.jwk))
    bare_port = free_port()
    bare = Server("bare-fastapi", [sys.executable, SCRIPT, "--serve-bare", str(bare_port), "--state-dir",
                                   str(state_dir)], {}, bare_port)
    token = keys.token(["buyer"], org="org_buyer")
    try:
        with running(bare):
            await bare.wait_ready("/.well-known/jwks.json")
            for backend in args.backends.split(","):
                for n in args.products:
                    name = f"{db_prefix('sl_catalog')}_bench"
                    if args.keep_db:
                        name = f"{name}_kept_{n}"
                    url = (await (existing_pg(name) if args.keep_db else recreate_pg(name))
                           if backend == "postgresql"
                           else f"sqlite+aiosqlite:///{state_dir / f'catalog-{n}.db'}")
                    ctx = Ctx(report, backend, n, args, token, bare_port)
                    ctx.bare_pid = bare.proc.pid
                    try:
                        await bench_size(ctx, url, state_dir)
                    except Exception:
                        report.failed(f"catalog at {n:,} products", "", traceback.format_exc(),
                                      backend=backend)
                    finally:
                        if backend == "postgresql" and not args.keep_db:
                            await drop_pg(name)
    finally:
        report.save()


def parse() -> argparse.Namespace:
    sizes = os.environ.get("SLUICE_BENCH_PRODUCTS", "100000,1000000" if full() else "100000")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--products", type=lambda s: [int(x) for x in s.split(",")], default=sizes,
                   help="catalog sizes, comma list (default 100000; BENCH_FULL=1: 100000,1000000)")
    p.add_argument("--seconds", type=float, default=6.0, help="duration of each throughput run")
    p.add_argument("--backends", default=",".join(backends()), help="comma list: postgresql,sqlite")
    p.add_argument("--search-concurrency", type=int, default=4)
    p.add_argument("--search-seconds", type=float, default=10.0, help="duration of each search class's run")
    p.add_argument("--get-concurrency", type=int, default=16)
    p.add_argument("--no-workers2", dest="workers2", action="store_false", help="skip the 2-worker runs")
    p.add_argument("--parts", type=lambda s: set(s.split(",")), default={"search", "hot", "me", "uniform"},
                   help="comma list of search,hot,me,uniform (default: all)")
    p.add_argument("--keep-db", action="store_true",
                   help="PostgreSQL: reuse <prefix>_bench_kept_<n> if it holds n products, keep it "
                   "afterwards (for repeated runs while tuning; drop it by hand)")
    p.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    p.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if isinstance(args.products, str):
        args.products = [int(x) for x in args.products.split(",")]
    return args


if __name__ == "__main__":
    ns = parse()
    if ns.serve_bare:
        serve_bare(ns.serve_bare, Path(ns.state_dir))
    else:
        asyncio.run(main(ns))
