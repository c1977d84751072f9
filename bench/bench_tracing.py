"""Tracing benchmark: what OpenTelemetry costs a request, in-process (no network, no load generator).

One catalog app per mode on its own SQLite database, driven over ASGI by one httpx client, the
modes interleaved round by round so machine noise hits them alike:

* ``off``: ``TRACE_EXPORTER=none`` (the default): nothing instrumented;
* ``on, sampled out``: instrumented, ``TRACE_SAMPLE_RATIO=0`` (no span recorded);
* ``on, every span kept``: the in-memory exporter, every span exported synchronously at its end
  (an upper bound for the OTLP exporter, which batches in a background thread).

Two requests: ``GET /v1/me`` (token check and a small JSON answer: the lightest authenticated
request, so the largest relative overhead) and ``POST /v1/products`` (a write: a product, its
version, search rows and an audit event in the outbox, with its trace context when traced).
Figures are CPU microseconds of the process per request (median of the rounds; the server and
the client share the process, so the client's part is in every mode alike); the ``limit`` is the same request
with tracing off.

    .venv/bin/python bench/bench_tracing.py
    .venv/bin/python bench/bench_tracing.py --requests 200 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, tests/ beside the packages

from bench.report import Report
from shared.migrations import upgrade
from tests.catalog.conftest import spec
from tests.support import TestKeys, app_factory, migrations_dir, settings_class, trust_test_keys

MODES = {"off": {"trace_exporter": "none"},
         "on, sampled out": {"trace_exporter": "memory", "trace_sample_ratio": 0.0},
         "on, every span kept": {"trace_exporter": "memory"}}


@contextlib.asynccontextmanager
async def catalog(url: str, keys: TestKeys, overrides: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    app = app_factory("catalog")(settings_class("catalog")(database_url=url, log_level="WARNING",
                                                           **overrides))
    trust_test_keys(app, keys)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bench") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def timed(client: httpx.AsyncClient, n: int, kind: str, headers: dict[str, str],
                counter: list[int]) -> float:
    """CPU microseconds of this process per request over ``n`` requests of ``kind`` (CPU time,
    not wall time: the other processes of a busy machine do not count)."""
    start = time.process_time()
    for _ in range(n):
        if kind == "me":
            resp = await client.get("/v1/me", headers=headers)
        else:
            counter[0] += 1
            resp = await client.post("/v1/products", headers=headers,
                                     json=spec(slug=f"bench-{counter[0]}"))
        assert resp.status_code in (200, 201), resp.text
    elapsed = time.process_time() - start
    exporter = client.app.state.span_exporter  # type: ignore[attr-defined]
    if exporter is not None:
        exporter.clear()
    return elapsed / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    report = Report("tracing")
    keys = TestKeys.generate()
    provider = {"Authorization": "Bearer " + keys.token(roles=["provider"], org="org_bench", ttl=3600)}
    try:
        with tempfile.TemporaryDirectory(prefix="sl_tracing_bench") as tmp:
            template = Path(tmp) / "template.db"
            upgrade(migrations_dir("catalog"), f"sqlite+aiosqlite:///{template}")
            async with contextlib.AsyncExitStack() as stack:
                clients = {}
                for mode, overrides in MODES.items():
                    db = Path(tmp) / f"{mode.replace(' ', '_').replace(',', '')}.db"
                    db.write_bytes(template.read_bytes())
                    clients[mode] = await stack.enter_async_context(
                        catalog(f"sqlite+aiosqlite:///{db}", keys, overrides))
                counter = [0]
                for kind in ("me", "product"):
                    for client in clients.values():  # warm-up
                        await timed(client, 20, kind, provider, counter)
                    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
                    for _ in range(args.rounds):
                        for mode, client in clients.items():
                            samples[mode].append(await timed(client, args.requests, kind, provider,
                                                             counter))
                    off = statistics.median(samples["off"])
                    path = "GET /v1/me" if kind == "me" else "POST /v1/products (outbox row)"
                    for mode in MODES:
                        figure = statistics.median(samples[mode])
                        report.row(f"tracing: catalog {path}, {mode}", figure=round(figure, 1),
                                   unit="CPU µs/request", limit=round(off, 1),
                                   limit_label="the same request, tracing off", lower_is_better=True,
                                   backend="sqlite", details={"rounds_us": [round(x, 1) for x in
                                                                            samples[mode]]})
    except Exception:
        report.failed("tracing: catalog requests", "CPU µs/request", traceback.format_exc(),
                      backend="sqlite")
    finally:
        report.save()


if __name__ == "__main__":
    asyncio.run(main())
