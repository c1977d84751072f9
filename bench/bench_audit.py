"""Audit log benchmark: append throughput over HTTP, proof latency at scale, export rate.

    .venv/bin/python bench/bench_audit.py                    # quick: 1M-event tree for proofs
    BENCH_FULL=1 .venv/bin/python bench/bench_audit.py       # 10M-event tree
    .venv/bin/python bench/bench_audit.py --events 200000 --append-seconds 4 --no-workers2

Per back end (``BENCH_BACKENDS``, default PostgreSQL; databases ``<prefix>_bench_*`` on
SLUICE_BENCH_POSTGRES_URL, prefix ``sl_audit``; SQLite: temp files):

1. **append over HTTP**: a fresh database, the audit service as a real uvicorn process
   (``serve --workers 1``, then 2), and the load generator (``bench/load.py``: wrk, or the
   Python generator in its own process) POSTing batches of 100 fresh events over
   ``--append-concurrency`` keep-alive connections for ``--append-seconds``. Beside it, its
   limit: the **raw batched insert** of the same event rows (100 per transaction, one
   connection, one multi-row INSERT per transaction on the same table and indexes).
2. **proofs at scale**: a fresh database filled with ``--events`` events by bulk inserts of rows,
   leaf hashes and subtree nodes built with the service's own tree code; then inclusion proofs
   (random leaf, full tree) and consistency proofs (random first size), one request at a time
   (one connection) for a few seconds each: p50/p99.
3. **export**: ``GET /v1/events/export`` of the first ``--export-events`` events, events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    Keys,
    Server,
    backends,
    db_prefix,
    drop_pg,
    free_port,
    full,
    http_request,
    recreate_pg,
    running,
)
from bench.load import LoadResult, combine, format_request, run_load_async
from bench.report import Report

ACTIONS = ["orders.order.paid", "orders.order.created", "catalog.product.listed", "access.token.issued",
           "access.client.created", "dataservice.query.executed"]
BATCH = 100
ROUNDS = 3  # alternating rounds of the HTTP path and its limit


# --- data ------------------------------------------------------------------------------

def event_json(i: int, rng: random.Random, base: datetime, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": (base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        "service": "orders",
        "action": ACTIONS[i % len(ACTIONS)],
        "actor": {"sub": f"cli_{i % 97}", "org": f"org_{i % 31}", "role": "buyer"},
        "subject": {"type": "order", "id": f"ord_{i:010d}"},
        "outcome": "success",
        "request_id": f"req-{i}",
        "details": {"amount": i % 10_000, "currency": "EUR"},
    }


def append_requests(token: str, templates: int = 64) -> list[bytes]:
    """POST /v1/events bodies of 100 events whose ids end in the load generator's per-request
    counter (``@@@@@@@@@@@@``): every request carries 100 events never seen before."""
    rng = random.Random(1)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    for t in range(templates):
        events = []
        for i in range(BATCH):
            prefix = uuid.UUID(int=rng.getrandbits(128), version=4)
            event_id = str(prefix)[:24] + "@" * 12
            events.append(event_json(t * BATCH + i, rng, base, event_id))
        out.append(format_request("POST", "/v1/events", headers, json.dumps({"events": events}).encode()))
    return out


async def fresh_database(backend: str, tmp: Path, suffix: str) -> str:
    from shared.migrations import upgrade

    if backend == "postgresql":
        url = await recreate_pg(f"{db_prefix('sl_audit')}_bench_{suffix}")
    else:
        url = f"sqlite+aiosqlite:///{tmp / f'audit-bench-{suffix}.db'}"
    upgrade(ROOT / "services" / "audit" / "migrations", url)
    return url


async def drop_database(backend: str, suffix: str) -> None:
    if backend == "postgresql":
        await drop_pg(f"{db_prefix('sl_audit')}_bench_{suffix}")


def audit_env(url: str, jwks_port: int) -> dict[str, str | None]:
    return {
        "SLUICE_AUDIT_DATABASE_URL": url,
        "SLUICE_AUDIT_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        "SLUICE_AUDIT_TOKEN_ISSUER": "http://bench-issuer",
        "SLUICE_AUDIT_LOG_LEVEL": "ERROR",
        "SLUICE_AUDIT_CHECKPOINT_KEY": None,  # a generated development key is fine here
    }


# --- 1. append throughput -----------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc; 0 when gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _descendants(pid: int) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


class CpuMeter:
    """CPU seconds spent by the server's processes and by the PostgreSQL backends serving its
    database, over a measured interval: figures per event that a loaded machine inflates far
    less than wall time (the load average does not enter them)."""

    def __init__(self, server: Server, url: str) -> None:
        self.server, self.url = server, url
        self.server_s = self.pg_s = 0.0

    async def _pg_pids(self) -> list[int]:
        if not self.url.startswith("postgresql"):
            return []
        import asyncpg
        from sqlalchemy.engine import make_url

        conn = await asyncpg.connect(make_url(self.url).set(drivername="postgresql").render_as_string(False))
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid()")
        finally:
            await conn.close()
        return [int(r["pid"]) for r in rows]

    def _server_pids(self) -> list[int]:
        pids = _descendants(self.server.proc.pid)
        return pids[1:] if self.server.profile_path else pids  # not py-spy itself

    async def start(self) -> None:
        self._server0 = {p: _cpu_seconds(p) for p in self._server_pids()}
        self._pg0 = {p: _cpu_seconds(p) for p in await self._pg_pids()}

    async def stop(self) -> None:
        server1 = {p: _cpu_seconds(p) for p in self._server_pids()}
        pg1 = {p: _cpu_seconds(p) for p in await self._pg_pids()}
        self.server_s += sum(v - self._server0.get(p, 0.0) for p, v in server1.items())
        self.pg_s += sum(v - self._pg0.get(p, 0.0) for p, v in pg1.items())

async def bench_append(backend: str, args: argparse.Namespace, tmp: Path, keys: Keys,
                       jwks_port: int, workers: int) -> dict[str, Any]:
    url = await fresh_database(backend, tmp, f"append{workers}")
    requests = append_requests(keys.token(["service"]))
    rounds: list[LoadResult] = []
    raw_rows, raw_seconds = 0, 0.0
    with running(Server.service("audit", audit_env(url, jwks_port), workers=workers)) as server:
        await server.wait_ready("/readyz")
        await run_load_async(server.port, requests, seconds=1, connections=2, first_number=10**11)  # warm-up
        cpu = CpuMeter(server, url)
        # The path and its limit in alternating rounds: a machine whose load drifts slows both.
        for i in range(ROUNDS):
            await cpu.start()
            rounds.append(await run_load_async(
                server.port, requests, seconds=args.append_seconds / ROUNDS,
                connections=args.append_concurrency, first_number=1 + i * 10**9))
            await cpu.stop()
            n = args.raw_rows // ROUNDS
            raw_seconds += await raw_insert_seconds(url, n, base_seq=10**12 + i * 10**9)
            raw_rows += n
        result = combine(rounds)
        if result.errors:
            raise RuntimeError(f"{result.errors} appends failed:\n{server.tail()}")
    size = await stored_events(url)
    await drop_database(backend, f"append{workers}")
    sent = result.requests * BATCH
    per_event = {"server_cpu_us_per_event": round(cpu.server_s / sent * 1e6, 1),
                 "postgres_cpu_us_per_event": round(cpu.pg_s / sent * 1e6, 1) if cpu.pg_s else None}
    print(f"[{backend}] {workers} worker(s): {result.rps * BATCH:,.0f} events/s; CPU per event: "
          f"server {per_event['server_cpu_us_per_event']} us, PostgreSQL backends "
          f"{per_event['postgres_cpu_us_per_event']} us; raw insert {raw_rows / raw_seconds:,.0f} rows/s; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    return {"load": result, "events_per_s": result.rps * BATCH, "raw_rows_per_s": raw_rows / raw_seconds,
            "stored": size, **per_event}


async def stored_events(url: str) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM events"))).scalar_one())
    finally:
        await engine.dispose()


async def raw_insert_seconds(url: str, rows: int, base_seq: int) -> float:
    """Seconds for plain batched INSERTs of ``rows`` event rows (100 per transaction, one
    connection, one multi-row INSERT each) into a copy of the events table with the same
    columns and indexes (``raw_events``: the service keeps appending to ``events`` between
    rounds, and a foreign row there would break its tree)."""
    from sqlalchemy import insert, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.audit.log import columns_of, event_row
    from services.audit.models import events
    from shared.events import AuditEvent

    events_table = events.to_metadata(MetaData(), name="raw_events")

    rng = random.Random(base_seq)
    now = datetime.now(UTC)
    made = [AuditEvent.model_validate(event_json(i, rng, now)) for i in range(rows)]
    batches = [[event_row(columns_of(e), base_seq + j * BATCH + i, now, hashlib.sha256(b"%d" % i).digest())
                for i, e in enumerate(made[j * BATCH:(j + 1) * BATCH])] for j in range(rows // BATCH)]
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("CREATE TABLE IF NOT EXISTS raw_events (LIKE events INCLUDING ALL)"))
            elif not (await conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'raw_events'"))
                      ).first():
                ddl = (await conn.execute(text(  # the table and its indexes, renamed (no triggers)
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN ('table', 'index') "
                    "AND sql IS NOT NULL ORDER BY type DESC"))).scalars().all()
                for sql in ddl:
                    await conn.execute(text(sql.replace("events", "raw_events")))
            await conn.commit()
            await conn.execute(insert(events_table), batches[0])  # warm the statement cache
            await conn.rollback()
            start = time.perf_counter()
            for batch in batches:
                await conn.execute(insert(events_table), batch)
                await conn.commit()
            return time.perf_counter() - start
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
    cols = ["seq", "event_id", "occurred_at", "received_at", "service", "action", "actor_sub",
            "actor_org", "actor_role", "subject_type", "subject_id", "outcome", "request_id",
            "details", "leaf_hash"]
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
                if size % 1_000_000 == 0 or size == n:
                    print(f"    ... {size:,} events ({time.perf_counter() - start:.0f}s)", flush=True)
            # VACUUM too: a log that grew gradually has been vacuumed as it grew, while a bulk
            # load of millions of rows makes autovacuum start an insert-driven pass right in the
            # measured proof rounds (seen at 10M: inclusion p99 9 ms with autovacuum running),
            # and CHECKPOINT: the load leaves gigabytes of dirty buffers whose write-out (run
            # first with VACUUM: inclusion p99 30 ms, consistency, measured after it, 2 ms)
            # would otherwise land in the first measured round.
            if backend == "postgresql":
                await raw.execute("VACUUM ANALYZE")
                await raw.execute("CHECKPOINT")
            else:
                await raw.execute("ANALYZE")
            if backend != "postgresql":
                await raw.commit()
    finally:
        await engine.dispose()
    return time.perf_counter() - start


async def bench_proofs(backend: str, args: argparse.Namespace, tmp: Path, keys: Keys,
                       jwks_port: int) -> dict[str, Any]:
    url = await fresh_database(backend, tmp, "proofs")
    n = args.events
    print(f"[{backend}] building a {n:,}-event log by bulk inserts ...", flush=True)
    build_s = await build_large_log(url, backend, n)
    print(f"[{backend}] built in {build_s:.0f}s", flush=True)
    rng = random.Random(4)
    result: dict[str, Any] = {"events": n, "build_seconds": round(build_s, 1)}
    with running(Server.service("audit", audit_env(url, jwks_port))) as server:
        await server.wait_ready("/readyz")
        paths = {
            "inclusion": [f"/v1/proofs/inclusion?leaf_index={rng.randrange(n)}&tree_size={n}"
                          for _ in range(5000)],
            "consistency": [f"/v1/proofs/consistency?first={rng.randint(1, n)}&second={n}"
                            for _ in range(5000)],
        }
        for kind, kind_paths in paths.items():
            requests = [format_request("GET", p, {}) for p in kind_paths]
            await run_load_async(server.port, requests[:200], seconds=1, connections=1)  # warm-up
            cpu = CpuMeter(server, url)
            await cpu.start()
            load_before = os.getloadavg()[0]
            result[kind] = await run_load_async(server.port, requests, seconds=args.proof_seconds,
                                                connections=1, order="random")
            await cpu.stop()
            served = max(result[kind].requests, 1)
            result[f"{kind}_cpu"] = {
                "server_cpu_ms_per_proof": round(cpu.server_s / served * 1e3, 3),
                "postgres_cpu_ms_per_proof": round(cpu.pg_s / served * 1e3, 3) if cpu.pg_s else None,
                "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            }
            if result[kind].errors:
                raise RuntimeError(f"{kind} proofs failed:\n{server.tail()}")
            print(f"[{backend}] {kind} proof at {n:,}: {result[kind].brief()}; CPU per proof "
                  f"{result[f'{kind}_cpu']}", flush=True)
        headers = {"Authorization": f"Bearer {keys.token(['regulator'])}"}
        count = min(args.export_events, n)
        t0 = time.perf_counter()
        status, body = await http_request(server.port, "GET", f"/v1/events/export?to_seq={count}", headers)
        elapsed = time.perf_counter() - t0
        lines = body.count(b"\n")
        if status != 200 or lines != count:
            raise RuntimeError(f"export answered {status} with {lines} lines")
        result["export_events_per_s"] = round(count / elapsed)
        result["export_events"] = count
    await drop_database(backend, "proofs")
    return result


async def serve_jwks(keys: Keys) -> tuple[Any, int]:
    """The JWKS the audit service verifies tokens with (an in-process asyncio server)."""
    body = json.dumps({"keys": [keys.jwk]}).encode()
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % len(body)) + body

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, port


async def main(args: argparse.Namespace) -> None:
    report = Report("audit")
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-audit-"))
    keys = Keys()
    jwks, jwks_port = await serve_jwks(keys)
    try:
        for backend in args.backends.split(","):
            await measure_backend(report, backend, args, tmp, keys, jwks_port)
    finally:
        jwks.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the SQLite logs are ~0.5 GB per million events
        report.save()


async def measure_backend(report: Report, backend: str, args: argparse.Namespace, tmp: Path,
                          keys: Keys, jwks_port: int) -> None:
    path = f"audit: append over HTTP, batches of {BATCH}"
    one: float | None = None
    for workers in (1, 2) if args.workers2 else (1,):
        print(f"[{backend}] append over HTTP, {workers} worker(s), {args.append_seconds:.0f}s ...",
              flush=True)
        try:
            a = await bench_append(backend, args, tmp, keys, jwks_port, workers)
        except Exception:
            report.failed(path, "events/s", traceback.format_exc(), backend=backend, workers=workers)
            continue
        details = {"load": a["load"].as_dict(), "stored_events": a["stored"],
                   "server_cpu_us_per_event": a["server_cpu_us_per_event"],
                   "postgres_cpu_us_per_event": a["postgres_cpu_us_per_event"],
                   "loadavg_1min_after": round(os.getloadavg()[0], 2)}
        if workers == 1:
            one = a["events_per_s"]
            report.row(path, figure=a["events_per_s"], unit="events/s", limit=round(a["raw_rows_per_s"]),
                       limit_label="raw batched INSERT, 100 rows/txn", min_figure=10_000, min_ratio=0.50,
                       backend=backend, loadgen=a["load"].tool, details=details)
        else:
            details["raw_rows_per_s"] = round(a["raw_rows_per_s"])
            report.row(path, figure=a["events_per_s"], unit="events/s", limit=one,
                       limit_label="1 worker, same run", backend=backend, workers=workers,
                       loadgen=a["load"].tool, details=details)
    try:
        p = await bench_proofs(backend, args, tmp, keys, jwks_port)
    except Exception:
        report.failed(f"audit: inclusion proof at {args.events:,} events, p99", "ms",
                      traceback.format_exc(), backend=backend)
        return
    n = f"{p['events']:,}"
    report.row(f"audit: inclusion proof at {n} events, p99", figure=p["inclusion"].p99_ms, unit="ms",
               max_figure=5.0, backend=backend, loadgen=p["inclusion"].tool,
               details={"load": p["inclusion"].as_dict(), "build_seconds": p["build_seconds"],
                        **p["inclusion_cpu"]})
    report.row(f"audit: consistency proof at {n} events, p99", figure=p["consistency"].p99_ms, unit="ms",
               backend=backend, loadgen=p["consistency"].tool,
               details={"load": p["consistency"].as_dict(), **p["consistency_cpu"]})
    report.row(f"audit: NDJSON export of {p['export_events']:,} events", figure=p["export_events_per_s"],
               unit="events/s", backend=backend)


def parse_args() -> argparse.Namespace:
    default_events = 10_000_000 if full() else 1_000_000
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default=",".join(backends()))
    p.add_argument("--events", type=int,
                   default=int(os.environ.get("SLUICE_BENCH_AUDIT_EVENTS", default_events)),
                   help="size of the log for proof and export figures (default 1M; BENCH_FULL=1: 10M)")
    p.add_argument("--append-seconds", type=float, default=8.0)
    p.add_argument("--append-concurrency", type=int, default=8)
    p.add_argument("--no-workers2", dest="workers2", action="store_false",
                   help="skip the 2-worker append run")
    p.add_argument("--raw-rows", type=int, default=30_000)
    p.add_argument("--proof-seconds", type=float, default=5.0, help="seconds of proofs per kind")
    p.add_argument("--export-events", type=int, default=200_000)
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
