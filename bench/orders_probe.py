"""Where one free-plan order's time goes, in process: statements per order and CPU per order.

    SLUICE_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/orders_probe.py [--n 200] [--sqlite] [--show]

Runs the orders app in this process (the test suite's catalog and access fakes in process,
no HTTP), places ``n`` free-plan orders one after another, each on a quote made beforehand,
and prints per order: the SQL statements the app sent (SQLAlchemy's, pool pings included,
and the hot asyncpg pool's), and ``time.process_time()`` — the CPU of the whole process,
the fakes and the fulfilment relay included (the relay is drained after the timed loop and
its statements are counted apart). ``--show`` prints each distinct statement of one order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event

from shared.migrations import upgrade
from shared.runtime import runtime_of
from tests.orders.conftest import start_orders
from tests.support import TestKeys, migrations_dir, recreate_pg_database


def _count_hot(counter: Counter[str]) -> None:
    """Count the hot asyncpg pool's statements too (shared/hot_reads.py)."""
    import asyncpg.connection as c

    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        orig = getattr(c.Connection, name)

        def wrap(orig: Any = orig, name: str = name) -> Any:
            async def counted(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                counter["asyncpg." + name + ": " + " ".join(str(query).split())[:110]] += 1
                return await orig(self, query, *args, **kw)
            return counted
        setattr(c.Connection, name, wrap())


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--sqlite", action="store_true")
    p.add_argument("--show", action="store_true")
    p.add_argument("--cprofile", help="write a cProfile of the timed loop to this file")
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    if args.sqlite:
        url = f"sqlite+aiosqlite:///{tmp}/orders.db"
    else:
        url = recreate_pg_database(os.environ.get("SLUICE_TEST_DB_PREFIX", "sluice") + "_orders_probe")
    upgrade(migrations_dir("orders"), url)
    keys = TestKeys.generate()
    counter: Counter[str] = Counter()
    raw: Counter[str] = Counter()
    _count_hot(raw)
    async with start_orders(url, keys, "http://127.0.0.1:9") as h:
        engine = runtime_of(h.app).db.engine

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _stmt(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
            counter[" ".join(statement.split())[:110]] += 1

        @event.listens_for(engine.sync_engine, "checkout")
        def _checkout(*a: Any) -> None:
            counter["(pool checkout: pre-ping when PostgreSQL)"] += 1

        for tx in ("begin", "commit", "rollback"):
            event.listen(engine.sync_engine, tx, lambda *a, tx=tx: counter.update([f"({tx.upper()})"]))
        buyer = h.buyer()
        quotes = [(await h.quote("plan_free"))["id"] for _ in range(args.n + 20)]
        for q in quotes[:20]:  # warm up
            assert (await h.order(q, buyer=buyer)).status_code == 201
        await h.delivered(30)
        counter.clear()
        raw.clear()
        prof = None
        if args.cprofile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        for q in quotes[20:]:
            resp = await h.client.post("/v1/orders", json={"quote_id": q, "purpose": "research"},
                                       headers={**buyer, "Idempotency-Key": str(uuid.uuid4())})
            assert resp.status_code == 201, resp.text
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.cprofile)
        hot_requests = dict(counter), dict(raw)
        counter.clear()
        raw.clear()
        c2 = time.process_time()
        await h.delivered(60)
        relay_cpu = time.process_time() - c2
        backend = "sqlite" if args.sqlite else "postgresql"
        print(f"{args.n} orders, {backend}: {cpu / args.n * 1e3:.2f} ms CPU "
              f"per order (process, relay partly included), {wall / args.n * 1e3:.2f} ms wall; "
              f"relay drain after: {relay_cpu / args.n * 1e3:.2f} ms CPU per order")
        for title, (sa, hot) in (("request path (+ relay runs meanwhile)", hot_requests),
                                 ("relay drain after", (dict(counter), dict(raw)))):
            total = sum(v for k, v in sa.items() if not k.startswith("(")) + sum(hot.values())
            print(f"\n{title}: {total / args.n:.2f} statements per order")
            for k, v in sorted({**sa, **hot}.items(), key=lambda kv: -kv[1]):
                if args.show or v >= args.n / 4:
                    print(f"  {v / args.n:6.2f}  {k}")


if __name__ == "__main__":
    asyncio.run(main())
