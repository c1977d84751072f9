"""Audit log benchmark: append throughput, proof latency at 1M events, export rate.

    .venv/bin/python bench/bench_audit.py                      # defaults: both back ends, 1M-event tree
    .venv/bin/python bench/bench_audit.py --events 100000 --backends sqlite --append-seconds 5

Per back end (PostgreSQL: database ``<prefix>_bench`` on SLUICE_BENCH_POSTGRES_URL, default
postgresql+asyncpg://postgres@127.0.0.1:5432/postgres, prefix ``sl_audit``; SQLite: a temp file):

1. **append over HTTP**: a fresh database, the audit service as a real ``uvicorn`` process, and a
   keep-alive HTTP/1.1 load generator in this process POSTing batches of 100 events
   (``--append-concurrency`` connections) for ``--append-seconds``. Beside it, the **raw batched
   insert rate** of the same event rows (100 per transaction, one connection, straight SQL on the
   same table and indexes) measured in the same run.
2. **proofs at scale**: a second fresh database filled with ``--events`` events (default 1,000,000)
   by direct bulk inserts of rows, leaf hashes and subtree nodes built with the service's own tree
   code (not HTTP calls); then the service is started on it and inclusion proofs (random leaf, full
   tree) and consistency proofs (random first size) are requested one at a time over HTTP:
   p50/p99 latency.
3. **export**: ``GET /v1/events/export`` of the first ``--export-events`` events, events/s.

Figures are printed (and with --json written as JSON); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ISSUER = "http://bench-issuer"
LOG_DIR = Path(tempfile.mkdtemp(prefix="sluice-bench-audit-logs-"))
ACTIONS = ["orders.order.paid", "orders.order.created", "catalog.product.listed", "access.token.issued",
           "access.client.created", "dataservice.query.executed"]


# --- tokens and the JWKS the service verifies them with ---------------------------------

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


def make_token(pem: str, roles: list[str]) -> str:
    from jose import jwt

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "cli_bench", "aud": "sluice-api", "iat": now, "nbf": now,
              "exp": now + 3600, "jti": uuid.uuid4().hex, "client_id": "cli_bench", "org": "org_bench",
              "roles": roles, "scope": " ".join(roles)}
    return str(jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "bench", "typ": "JWT"}))


def serve_jwks(jwk: dict[str, Any]) -> tuple[ThreadingHTTPServer, int]:
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


# --- processes and a small keep-alive HTTP/1.1 client (httpx would be the bottleneck) -------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_audit(url: str, port: int, jwks_port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SLUICE_AUDIT_DATABASE_URL": url,
        "SLUICE_AUDIT_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        "SLUICE_AUDIT_TOKEN_ISSUER": ISSUER,
        "SLUICE_AUDIT_LOG_LEVEL": "ERROR",
    }
    env.pop("SLUICE_AUDIT_CHECKPOINT_KEY", None)  # a generated development key is fine here
    cmd = [sys.executable, "-m", "services.audit", "serve", "--port", str(port), "--workers", str(workers)]
    log = open(LOG_DIR / f"audit-{port}.log", "wb")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            if size == 0:
                await self.reader.readline()
                return status, b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def server_log(port: int) -> str:
    path = LOG_DIR / f"audit-{port}.log"
    return path.read_text()[-2000:] if path.exists() else ""


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"audit service exited: {server_log(port)}")
        conn = Conn(port)
        try:
            status, _ = await conn.request("GET", "/readyz", {})
            if status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        await asyncio.sleep(0.1)
    raise RuntimeError("audit service did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- data ------------------------------------------------------------------------------

def event_json(i: int, rng: random.Random, base: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": (base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        "service": "orders",
        "action": ACTIONS[i % len(ACTIONS)],
        "actor": {"sub": f"cli_{i % 97}", "org": f"org_{i % 31}", "role": "buyer"},
        "subject": {"type": "order", "id": f"ord_{i:010d}"},
        "outcome": "success",
        "request_id": f"req-{i}",
        "details": {"amount": i % 10_000, "currency": "EUR"},
    }


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


async def fresh_database(backend: str, args: argparse.Namespace, tmp: Path, suffix: str) -> str:
    from shared.migrations import upgrade

    if backend == "postgresql":
        url = await recreate_pg(args.postgres_url, f"{args.db_prefix}_bench_{suffix}")
    else:
        url = f"sqlite+aiosqlite:///{tmp / f'audit-bench-{suffix}.db'}"
    upgrade(ROOT / "services" / "audit" / "migrations", url)
    return url


# --- 1. append throughput -----------------------------------------------------------------

async def bench_append(
    backend: str, args: argparse.Namespace, tmp: Path, pem: str, jwks_port: int
) -> dict[str, Any]:
    url = await fresh_database(backend, args, tmp, "append")
    rng = random.Random(1)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    n_batches = 4000
    bodies = [json.dumps({"events": [event_json(b * 100 + i, rng, base) for i in range(100)]}).encode()
              for b in range(n_batches)]
    port = free_port()
    proc = start_audit(url, port, jwks_port, args.workers)
    headers = {"Authorization": f"Bearer {make_token(pem, ['service'])}"}
    try:
        await wait_ready(port, proc)
        next_batch = 0
        done = 0
        latencies: list[float] = []

        async def worker(deadline: float) -> None:
            nonlocal next_batch, done
            conn = Conn(port)
            try:
                while time.perf_counter() < deadline and next_batch < n_batches:
                    body = bodies[next_batch]
                    next_batch += 1
                    t0 = time.perf_counter()
                    status, resp = await conn.request("POST", "/v1/events", headers, body)
                    latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        raise RuntimeError(f"append answered {status}: {resp[:300]!r}")
                    done += 100
            finally:
                conn.close()

        # warm-up (JWKS fetch, connection pools, first checkpoint)
        await asyncio.gather(*(worker(time.perf_counter() + 1.0) for _ in range(2)))
        done, latencies = 0, []
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + args.append_seconds) for _ in range(args.append_concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        stop(proc)
    raw = await raw_insert_rate(url, args.raw_rows)
    latencies.sort()
    result = {
        "events_per_s": round(done / elapsed),
        "batch_latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 1),
        "batch_latency_ms_p99": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        "raw_batched_insert_rows_per_s": round(raw),
        "workers": args.workers,
        "concurrency": args.append_concurrency,
    }
    result["http_vs_raw"] = round(result["events_per_s"] / raw, 2)
    return result


async def raw_insert_rate(url: str, rows: int) -> float:
    """Plain batched INSERTs of event rows (100 per transaction) into the same table."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.audit.log import event_row
    from shared.events import AuditEvent

    rng = random.Random(2)
    now = datetime.now(UTC)
    base_seq = 10**12
    events = [AuditEvent.model_validate(event_json(i, rng, now)) for i in range(rows)]
    batches = [[event_row(e, base_seq + j * 100 + i, now, hashlib.sha256(b"%d" % i).digest())
                for i, e in enumerate(events[j * 100:(j + 1) * 100])] for j in range(rows // 100)]
    from services.audit.models import events as events_table

    engine = create_async_engine(url)
    try:
        start = time.perf_counter()
        async with engine.connect() as conn:
            for batch in batches:
                await conn.execute(insert(events_table), batch)
                await conn.commit()
        return (len(batches) * 100) / (time.perf_counter() - start)
    finally:
        await engine.dispose()


# --- 2. a large tree by bulk inserts -------------------------------------------------------

async def build_large_log(url: str, backend: str, n: int) -> float:
    """Fill ``events`` and ``tree_nodes`` directly with ``n`` events, hashed
    exactly as the service would (leaf = canonical JSON of the stored event)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.audit import merkle
    from services.audit.verifylib import canonical_json, leaf_hash

    rng = random.Random(3)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    received = datetime(2026, 11, 28, tzinfo=UTC)
    received_json = received.isoformat().replace("+00:00", "Z")
    engine = create_async_engine(url)
    start = time.perf_counter()
    size, frontier = 0, dict[int, bytes]()
    chunk = 20_000
    try:
        async with engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            while size < n:
                count = min(chunk, n - size)
                rows, leaves = [], []
                for i in range(size, size + count):
                    ev = event_json(i, rng, base)
                    stored = {**ev, "seq": i, "received_at": received_json}
                    h = leaf_hash(canonical_json(stored))
                    leaves.append(h)
                    rows.append((i, ev["event_id"], base + timedelta(milliseconds=i), received, ev["service"],
                                 ev["action"], ev["actor"]["sub"], ev["actor"]["org"], ev["actor"]["role"],
                                 ev["subject"]["type"], ev["subject"]["id"], ev["outcome"], ev["request_id"],
                                 json.dumps(ev["details"]), h))
                nodes, frontier = merkle.append_leaves(size, frontier, leaves)
                cols = ["seq", "event_id", "occurred_at", "received_at", "service", "action", "actor_sub",
                        "actor_org", "actor_role", "subject_type", "subject_id", "outcome", "request_id",
                        "details", "leaf_hash"]
                if backend == "postgresql":
                    await raw.copy_records_to_table("events", records=rows, columns=cols)
                    await raw.copy_records_to_table("tree_nodes", records=nodes,
                                                    columns=["level", "idx", "hash"])
                else:
                    def fmt(t: datetime) -> str:  # how SQLAlchemy stores datetimes in SQLite
                        return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

                    sqlite_rows = [(*r[:2], fmt(r[2]), fmt(r[3]), *r[4:]) for r in rows]
                    marks = ", ".join("?" * len(cols))
                    insert_sql = f"INSERT INTO events ({', '.join(cols)}) VALUES ({marks})"
                    await raw.executemany(insert_sql, sqlite_rows)
                    await raw.executemany("INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
                    await raw.commit()
                size += count
                if size % 200_000 == 0:
                    print(f"    ... {size} events", flush=True)
            if backend == "postgresql":
                await raw.execute("ANALYZE")
            else:
                await raw.execute("ANALYZE")
                await raw.commit()
    finally:
        await engine.dispose()
    return time.perf_counter() - start


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(len(values) * p))], 2)


async def bench_proofs(
    backend: str, args: argparse.Namespace, tmp: Path, pem: str, jwks_port: int
) -> dict[str, Any]:
    url = await fresh_database(backend, args, tmp, "proofs")
    print(f"[{backend}] building a {args.events}-event log by bulk inserts ...", flush=True)
    build_s = await build_large_log(url, backend, args.events)
    print(f"[{backend}] built in {build_s:.0f}s", flush=True)
    port = free_port()
    proc = start_audit(url, port, jwks_port, 1)
    rng = random.Random(4)
    n = args.events
    result: dict[str, Any] = {"events": n, "build_seconds": round(build_s, 1)}
    try:
        await wait_ready(port, proc)
        conn = Conn(port)
        for _ in range(50):  # warm-up
            await conn.request("GET", f"/v1/proofs/inclusion?leaf_index={rng.randrange(n)}&tree_size={n}", {})
        for kind in ("inclusion", "consistency"):
            lat = []
            for _ in range(args.proofs):
                if kind == "inclusion":
                    path = f"/v1/proofs/inclusion?leaf_index={rng.randrange(n)}&tree_size={n}"
                else:
                    path = f"/v1/proofs/consistency?first={rng.randint(1, n)}&second={n}"
                t0 = time.perf_counter()
                status, body = await conn.request("GET", path, {})
                lat.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
            result[f"{kind}_ms_p50"] = pct(lat, 0.50)
            result[f"{kind}_ms_p99"] = pct(lat, 0.99)
            print(f"[{backend}] {kind} proof at {n}: p50 {result[f'{kind}_ms_p50']} ms, "
                  f"p99 {result[f'{kind}_ms_p99']} ms", flush=True)
        headers = {"Authorization": f"Bearer {make_token(pem, ['regulator'])}"}
        count = min(args.export_events, n)
        t0 = time.perf_counter()
        status, body = await conn.request("GET", f"/v1/events/export?to_seq={count}", headers)
        elapsed = time.perf_counter() - t0
        lines = body.count(b"\n")
        if status != 200 or lines != count:
            raise RuntimeError(f"export answered {status} with {lines} lines")
        result["export_events_per_s"] = round(count / elapsed)
        result["export_events"] = count
        print(f"[{backend}] export: {result['export_events_per_s']} events/s ({count} events)", flush=True)
        conn.close()
    finally:
        stop(proc)
    return result


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-audit-"))
    pem, jwk = make_keys()
    jwks, jwks_port = serve_jwks(jwk)
    results: dict[str, Any] = {}
    try:
        for backend in args.backends.split(","):
            print(f"[{backend}] append over HTTP, batches of 100, {args.append_seconds:.0f}s ...", flush=True)
            append = await bench_append(backend, args, tmp, pem, jwks_port)
            print(f"[{backend}] append: {append['events_per_s']} events/s over HTTP (batch p50 "
                  f"{append['batch_latency_ms_p50']} ms, p99 {append['batch_latency_ms_p99']} ms); "
                  f"raw batched INSERT of the same rows: {append['raw_batched_insert_rows_per_s']} rows/s "
                  f"(HTTP/raw = {append['http_vs_raw']:.0%})", flush=True)
            proofs = await bench_proofs(backend, args, tmp, pem, jwks_port)
            results[backend] = {"append": append, "proofs_and_export": proofs}
    finally:
        jwks.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)  # the SQLite logs are ~0.5 GB per million events
    summary = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                           "load_average": os.getloadavg()}, "results": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        write_json(args.json, summary)


def write_json(path: str, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--events", type=int, default=int(os.environ.get("SLUICE_BENCH_AUDIT_EVENTS", 1_000_000)),
                   help="size of the log for proof and export figures")
    p.add_argument("--append-seconds", type=float, default=8.0)
    p.add_argument("--append-concurrency", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers for the append figure")
    p.add_argument("--raw-rows", type=int, default=30_000)
    p.add_argument("--proofs", type=int, default=2000, help="proof requests per kind")
    p.add_argument("--export-events", type=int, default=200_000)
    p.add_argument("--postgres-url", default=os.environ.get(
        "SLUICE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--db-prefix", default=os.environ.get("SLUICE_BENCH_DB_PREFIX", "sl_audit"))
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
