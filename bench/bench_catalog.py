"""Catalog benchmark: search latency and product GET throughput on a large generated catalog.

    .venv/bin/python bench/bench_catalog.py                       # 100k products, SQLite + PostgreSQL
    .venv/bin/python bench/bench_catalog.py --products 20000 --seconds 5 --backends sqlite

What it does, per back end:
1. creates a fresh database (PostgreSQL: ``<prefix>_bench`` on SLUICE_BENCH_POSTGRES_URL, default
   postgresql+asyncpg://postgres@127.0.0.1:5432/postgres, prefix ``sl_catalog``; SQLite: a temp file),
   migrates it, and bulk-inserts the generated products straight into the tables (listed, one
   published version each, 2-4 tags, 1-2 plans) — the API is not used for loading;
2. starts the catalog as a real ``uvicorn`` process, and a bare FastAPI app (also uvicorn) that
   serves the JWKS the catalog verifies tokens with and ``GET /bare/product`` returning the very
   JSON the catalog returns for one product;
3. measures search (a mix of full-text, filter, facet and sort queries) and ``GET /v1/products/{id}``
   with a keep-alive HTTP/1.1 load generator in this process, and the bare endpoint the same way.

Figures are printed (and with --json written as JSON); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ISSUER = "http://bench-issuer"
SCRIPT = str(Path(__file__).resolve())
LOG_DIR = Path(tempfile.gettempdir()) / f"sluice-bench-catalog-logs-{os.getpid()}"
LOG_DIR.mkdir(exist_ok=True)


def write_json(path: str, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2))

WORDS = """
traffic mobility commuter bus tram train station bike parking road accident speed route journey
weather rainfall temperature wind humidity climate storm flood drought snow forecast radar satellite
energy electricity consumption solar wind turbine grid meter household heating gas emission carbon
health hospital admission patient clinic prescription vaccine disease pharmacy diagnosis waiting
finance payment transaction card merchant retail sales revenue invoice credit loan mortgage insurance
claim premium risk fraud market price index stock trade export import customs shipping port cargo
agriculture crop yield soil irrigation harvest livestock dairy fertiliser pesticide farm field
education school pupil exam enrolment teacher university course graduate literacy attendance
population census household age income employment unemployment wage labour migration district city
region postcode street building housing rent property land cadastre zoning permit construction
water quality river lake groundwater pollution air noise waste recycling sewage biodiversity forest
tourism hotel visitor booking flight airport airline passenger arrival departure delay cancellation
telecom mobile network coverage signal broadband internet subscriber call roaming antenna tower
crime police incident report court justice safety fire emergency ambulance response dispatch
""".split()
CATEGORIES = ["mobility", "environment", "energy", "health", "finance", "agriculture", "education",
              "demographics", "real-estate", "tourism", "telecom", "public-safety"]
GRADES = ["L1_public"] * 5 + ["L2_internal"] * 4 + ["L3_sensitive"]
ORGS = [f"org_bench_{i:03d}" for i in range(200)]


# --- data generation ---------------------------------------------------------------

def _synthetic_vocabulary(n: int) -> list[str]:
    rng = random.Random(3)
    syllables = ["ka", "lo", "mi", "ne", "ta", "ru", "so", "vi", "pe", "da", "gor", "lin", "mar", "tev",
                 "bri", "sol", "quan", "dex", "rho", "ul", "zen", "fa", "wy", "cto"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(3, 4))))
    return sorted(words)


# Word frequencies follow Zipf's law, offset so that (as in real text once stop words are
# gone) the most common word appears in about a tenth of the products and most words are rare.
# The real domain words take the most frequent ranks; queries use them.
VOCABULARY = WORDS + _synthetic_vocabulary(20_000)
_ZIPF_OFFSET = 100
_CUM_WEIGHTS: list[float] = []
_acc = 0.0
for _rank in range(len(VOCABULARY)):
    _acc += 1.0 / (_rank + 1 + _ZIPF_OFFSET)
    _CUM_WEIGHTS.append(_acc)


def words(rng: random.Random, k: int) -> list[str]:
    return rng.choices(VOCABULARY, cum_weights=_CUM_WEIGHTS, k=k)


Generated = tuple[dict[str, Any], dict[str, Any], list[str]]


def make_product(i: int, rng: random.Random, now: datetime) -> Generated:
    title = " ".join(words(rng, rng.randint(2, 5))).capitalize() + f" {2015 + i % 10}"
    summary = " ".join(words(rng, 12)) + "."
    description = " ".join(words(rng, 30)) + "."
    tags = sorted(set(words(rng, rng.randint(2, 4))))
    grade = rng.choice(GRADES)
    category = rng.choice(CATEGORIES)
    currency = "EUR" if rng.random() < 0.8 else "USD"
    kinds = rng.sample(["free", "one_time", "subscription", "metered"], rng.randint(1, 2))
    plans: list[dict[str, Any]] = []
    for n, kind in enumerate(kinds):
        price = 0 if kind == "free" else rng.randint(1, 500) * 100
        plans.append({
            "id": f"plan_{i:08x}{n:08x}", "name": kind.replace("_", " ").title(), "kind": kind,
            "currency": currency, "price": price,
            "period": "month" if kind in ("subscription", "metered") else None,
            "price_per_query": 5 if kind == "metered" else 0, "included_queries": 0, "tiers": [],
            "query_quota": 10000, "access_days": 30 if kind in ("free", "one_time") else None,
        })
    pid = f"prd_{i:016x}"
    org = ORGS[i % len(ORGS)]
    slug = f"bench-{i}"
    listed_at = now - timedelta(seconds=i * 13)
    l3 = grade == "L3_sensitive"
    content = {
        "slug": slug, "title": title, "summary": summary, "description": description, "category": category,
        "tags": tags, "grade": grade, "personal_data": "deidentified" if l3 else "none",
        "deidentification": ({"method": "k-anonymity", "k": 10, "date": "2026-01-01", "attested_by": "DPO"}
                             if l3 else None),
        "rights": {"resource_holder": "Holder", "processing_right_holder": "Processor",
                   "operating_right_holder": "Operator", "provenance": "Generated", "licence": "CC-BY-4.0"},
        "schema": {"fields": [{"name": "district", "type": "string", "description": "", "personal": False,
                               "masked": False},
                              {"name": "value", "type": "number", "description": "", "personal": False,
                               "masked": False}]},
        "sample": None,
        "delivery": {"data_service_url": f"https://data.{org}.example",
                     "mode": "aggregates" if l3 else "rows",
                     "max_rows": None, "min_group_size": None, "epsilon_budget": None},
        "usage_policy": {"allowed_purposes": ["research"], "max_duration_days": 365, "resale_allowed": False,
                         "territories": ["EU"]},
        "derived_from": [], "plans": plans,
    }
    status = "listed" if i % 50 else "suspended"
    product = {
        "id": pid, "provider_org": org, "slug": slug, "status": status, "latest_version": 1,
        "draft": None, "draft_version": None, "draft_status": None, "submitted_at": None,
        "submitted_by": None,
        "status_reason": None, "title": title, "summary": summary, "description": description,
        "tags_text": " ".join(tags), "category": category, "grade": grade, "currency": currency,
        "min_price": min(int(p["price"]) for p in plans),
        "has_free": "free" in kinds, "has_one_time": "one_time" in kinds,
        "has_subscription": "subscription" in kinds, "has_metered": "metered" in kinds,
        "created_at": listed_at, "updated_at": listed_at, "listed_at": listed_at,
    }
    version = {
        "product_id": pid, "version": 1, "grade": grade, "content": content,
        "guardrails": {"max_rows": 1000, "min_group_size": 10 if l3 else 1, "epsilon_budget": None},
        "published_at": listed_at, "published_by": "cli_bench", "approved_by": None, "approval_note": None,
    }
    return product, version, tags


async def load(url: str, count: int, batch: int = 2000) -> float:
    from sqlalchemy import insert, select, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.catalog.models import Product, ProductTag, ProductVersion

    rng = random.Random(42)
    now = datetime.now(UTC)
    engine = create_async_engine(url)
    start = time.perf_counter()
    pg = engine.dialect.name == "postgresql"
    try:
        if pg:  # one index build after the load is far quicker than 100k GIN insertions
            async with engine.begin() as conn:
                await conn.execute(text("DROP INDEX ix_products_search"))
                await conn.execute(text("DROP INDEX ix_products_title_search"))
        for lo in range(0, count, batch):
            made = [make_product(i, rng, now) for i in range(lo, min(count, lo + batch))]
            async with engine.begin() as conn:
                await conn.execute(insert(Product), [p for p, _, _ in made])
                await conn.execute(insert(ProductVersion), [v for _, v, _ in made])
                pks = dict((await conn.execute(
                    select(Product.id, Product.pk).where(Product.id.in_([p["id"] for p, _, _ in made]))
                )).all())
                await conn.execute(insert(ProductTag), [
                    {"product_pk": pks[p["id"]], "tag": t} for p, _, tags in made for t in tags
                ])
        if pg:
            async with engine.begin() as conn:
                await conn.execute(
                    text("CREATE INDEX ix_products_search ON products USING GIN (search_vector)"))
                await conn.execute(
                    text("CREATE INDEX ix_products_title_search ON products USING GIN (title_vector)"))
            # VACUUM sets the visibility map (index-only scans), as autovacuum would in production.
            async with engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM ANALYZE"))
        else:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO products_fts(products_fts) VALUES ('optimize')"))
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - start


# --- processes ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_keys() -> tuple[str, dict[str, Any]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jose import jwk

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    pub = jwk.construct(public, "RS256").to_dict()
    return pem, {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "bench", "n": pub["n"], "e": pub["e"]}


def make_token(pem: str) -> str:
    from jose import jwt

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "cli_bench", "aud": "sluice-api", "iat": now, "nbf": now,
              "exp": now + 3600, "jti": "bench", "client_id": "cli_bench", "org": "org_buyer",
              "roles": ["buyer"], "scope": "buyer"}
    return str(jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "bench", "typ": "JWT"}))


def serve_bare(port: int, state_dir: Path) -> None:
    """The baseline: a bare FastAPI endpoint returning the same JSON (plus the bench JWKS)."""
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


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Server output goes to a file: an unread pipe would fill up and stall the server.
    log = open(LOG_DIR / f"server-{len(list(LOG_DIR.iterdir()))}.log", "wb")
    return subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited; see the logs in {LOG_DIR}")
        try:
            status, _ = await fetch_once(port, path, {})
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server on {port} did not become ready")


# --- a small keep-alive HTTP/1.1 client (httpx would be the bottleneck) ------------------

class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
        self.writer.write((head + "\r\n").encode())
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def fetch_once(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = Conn(port)
    try:
        return await conn.get(path, headers)
    finally:
        conn.close()


async def hammer(port: int, paths: list[str], headers: dict[str, str], *, seconds: float,
                 concurrency: int) -> dict[str, Any]:
    """Send requests from ``concurrency`` keep-alive connections for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)

    async def worker() -> None:
        nonlocal errors
        conn = Conn(port)
        try:
            while time.perf_counter() < deadline:
                path = paths[rng.randrange(len(paths))]
                t0 = time.perf_counter()
                status, _ = await conn.get(path, headers)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {"requests": len(latencies), "errors": errors, "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 2)}


def search_paths(rng: random.Random, n: int = 400) -> dict[str, list[str]]:
    """Query mixes by kind, each a list of request paths."""
    def q(params: dict[str, Any]) -> str:
        return "/v1/products?" + urlencode(params)

    mixes: dict[str, list[str]] = {
        "text_one_word": [q({"q": rng.choice(WORDS)}) for _ in range(n)],
        "text_two_words": [q({"q": f"{rng.choice(WORDS)} {rng.choice(WORDS)}"}) for _ in range(n)],
        "text_and_filters": [q({"q": rng.choice(WORDS), "category": rng.choice(CATEGORIES),
                                "grade": rng.choice(GRADES)}) for _ in range(n)],
        "filters_only_newest": [q({"category": rng.choice(CATEGORIES), "sort": "newest"}) for _ in range(n)],
        "tag_price_sorted": [q({"tag": rng.choice(WORDS), "max_price": 20000, "currency": "EUR",
                                "sort": "price"}) for _ in range(n)],
        "browse_all_newest": [q({"sort": "newest"}) for _ in range(n)],
    }
    return mixes


def catalog_env(url: str, bare_port: int, **extra: str) -> dict[str, str]:
    return {
        "SLUICE_CATALOG_DATABASE_URL": url,
        "SLUICE_CATALOG_JWKS_URL": f"http://127.0.0.1:{bare_port}/.well-known/jwks.json",
        "SLUICE_CATALOG_TOKEN_ISSUER": ISSUER,
        "SLUICE_CATALOG_LOG_LEVEL": "WARNING",
        **extra,
    }


async def get_vs_bare(name: str, label: str, port: int, bare_port: int, paths: list[str],
                      headers: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Product GET and the bare endpoint back to back, so both see the same machine load."""
    get = await hammer(port, paths, headers, seconds=args.seconds, concurrency=args.get_concurrency)
    bare = await hammer(bare_port, ["/bare/product"], {}, seconds=args.seconds,
                        concurrency=args.get_concurrency)
    ratio = round(get["rps"] / bare["rps"], 3)
    print(f"[{name}] GET /v1/products/{{id}} ({label}): {get}", flush=True)
    print(f"[{name}] bare FastAPI, same JSON: {bare}", flush=True)
    print(f"[{name}] product GET / bare ({label}) = {ratio:.0%}", flush=True)
    # Where the time goes: the shared middleware alone (/healthz), plus token verification (/v1/me).
    healthz = await hammer(port, ["/healthz"], {}, seconds=args.seconds / 2, concurrency=args.get_concurrency)
    me = await hammer(port, ["/v1/me"], headers, seconds=args.seconds / 2, concurrency=args.get_concurrency)
    print(f"[{name}] catalog /healthz (middleware only): {healthz}", flush=True)
    print(f"[{name}] catalog /v1/me (middleware + token verification): {me}", flush=True)
    return {"product_get": get, "bare_fastapi": bare, "ratio": ratio, "catalog_healthz": healthz,
            "catalog_me": me}


async def bench_backend(name: str, url: str, args: argparse.Namespace, pem: str, state_dir: Path,
                        bare_port: int) -> dict[str, Any]:
    from shared.migrations import upgrade

    upgrade(ROOT / "services" / "catalog" / "migrations", url)
    print(f"[{name}] loading {args.products} products ...", flush=True)
    load_s = await load(url, args.products)
    print(f"[{name}] loaded in {load_s:.1f}s", flush=True)
    result: dict[str, Any] = {"backend": name, "products": args.products, "load_seconds": round(load_s, 1)}
    headers = {"Authorization": f"Bearer {make_token(pem)}"}
    rng = random.Random(1)
    ids = [f"prd_{i:016x}" for i in rng.sample(range(args.products), min(5000, args.products))]
    # Product pages are read with Zipf popularity (a few products get most views).
    popular = rng.choices(ids, weights=[1.0 / (r + 1) for r in range(len(ids))], k=20_000)
    uniform = [f"/v1/products/{i}" for i in ids]

    port = free_port()
    proc = start([sys.executable, "-m", "services.catalog", "serve", "--port", str(port)],
                 catalog_env(url, bare_port))
    try:
        await wait_ready(port, "/healthz", proc)
        status, body = await fetch_once(port, f"/v1/products/{ids[0]}", headers)
        assert status == 200, body[:300]
        (state_dir / "product.json").write_text(body.decode())
        await hammer(port, uniform, headers, seconds=1, concurrency=4)  # warm up
        searches: dict[str, Any] = {}
        every: list[str] = []
        for kind, paths in search_paths(random.Random(2)).items():
            every += paths
            searches[kind] = await hammer(port, paths, headers, seconds=args.seconds / 3,
                                          concurrency=args.search_concurrency)
            print(f"[{name}] search {kind}: {searches[kind]}", flush=True)
        searches["mixed"] = await hammer(port, every, headers, seconds=args.seconds,
                                         concurrency=args.search_concurrency)
        print(f"[{name}] search mixed: {searches['mixed']}", flush=True)
        result["search"] = searches
        result["get_one_hot_product"] = await get_vs_bare(
            name, "one product, always cached", port, bare_port, [f"/v1/products/{ids[0]}"], headers, args)
        result["get_popular_cached"] = await get_vs_bare(
            name, "Zipf-popular ids, default 10 s public-view cache", port, bare_port,
            [f"/v1/products/{i}" for i in popular], headers, args)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    # The worst case: every GET reads the database (cache off, ids spread uniformly).
    port = free_port()
    proc = start([sys.executable, "-m", "services.catalog", "serve", "--port", str(port)],
                 catalog_env(url, bare_port, SLUICE_CATALOG_PUBLIC_VIEW_CACHE_SECONDS="0",
                             SLUICE_CATALOG_SEARCH_FACET_CACHE_SECONDS="0"))
    try:
        await wait_ready(port, "/healthz", proc)
        await hammer(port, uniform, headers, seconds=1, concurrency=4)  # warm up
        result["search_mixed_no_facet_cache"] = await hammer(
            port, every, headers, seconds=args.seconds, concurrency=args.search_concurrency)
        print(f"[{name}] search mixed, no facet cache: {result['search_mixed_no_facet_cache']}", flush=True)
        result["get_uniform_uncached"] = await get_vs_bare(
            name, "uniform ids, cache off", port, bare_port, uniform, headers, args)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return result


async def recreate_pg(admin_url: str, name: str) -> str:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def main(args: argparse.Namespace) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-catalog-"))
    pem, public_jwk = make_keys()
    (state_dir / "jwk.json").write_text(json.dumps(public_jwk))
    bare_port = free_port()
    bare = start([sys.executable, SCRIPT, "--serve-bare", str(bare_port),
                  "--state-dir", str(state_dir)], {})
    results = []
    try:
        await wait_ready(bare_port, "/.well-known/jwks.json", bare)
        for backend in args.backends.split(","):
            if backend == "postgresql":
                url = await recreate_pg(args.postgres_url, f"{args.db_prefix}_bench")
            else:
                url = f"sqlite+aiosqlite:///{state_dir / 'catalog-bench.db'}"
            results.append(await bench_backend(backend, url, args, pem, state_dir, bare_port))
    finally:
        bare.terminate()
        bare.wait(timeout=10)
    summary = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "seconds": args.seconds, "results": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        write_json(args.json, summary)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--products", type=int, default=int(os.environ.get("SLUICE_BENCH_PRODUCTS", 100_000)),
                   help="catalog size (default 100000; env SLUICE_BENCH_PRODUCTS)")
    p.add_argument("--seconds", type=float, default=6.0, help="duration of each throughput run")
    p.add_argument("--backends", default="postgresql,sqlite", help="comma list: postgresql,sqlite")
    p.add_argument("--postgres-url", default=os.environ.get(
        "SLUICE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--db-prefix", default=os.environ.get("SLUICE_BENCH_DB_PREFIX", "sl_catalog"))
    p.add_argument("--search-concurrency", type=int, default=4)
    p.add_argument("--get-concurrency", type=int, default=16)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    p.add_argument("--state-dir", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    ns = parse()
    if ns.serve_bare:
        serve_bare(ns.serve_bare, Path(ns.state_dir))
    else:
        asyncio.run(main(ns))
