"""Data and helpers of the dataservice benchmark: the bench mapping, a fast PostgreSQL seed
of a million demo-shaped rows, and the pre-DP service (measured in the same run).

The throughput target is relative to the service before differential privacy (commit
``BASELINE``: exact answers, k-suppression, differencing checks). Instead of a number copied
from an old run, the benchmark extracts that commit with ``git archive`` and measures it on
the same data, with the same concurrency, in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.dataservice.demo_data import health_visits, metadata
from services.dataservice.settings import DEMO_PRODUCTS_FILE

ROOT = Path(__file__).resolve().parent.parent
#: The last main commit before L3 answers became differentially private (issue 10).
BASELINE = "dceec56"
PRODUCT = "prd_demo_health"


def bench_mapping(folder: Path, *, epsilon: float = 1000.0) -> Path:
    """The demo mapping with a budget no benchmark run can spend (the budget is not what is
    measured here; tests/dataservice prove it holds)."""
    doc = yaml.safe_load(DEMO_PRODUCTS_FILE.read_text())
    doc["products"][PRODUCT]["privacy"]["epsilon"] = epsilon
    path = folder / "bench-products.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


# Demo-shaped rows made inside PostgreSQL (a Python seed of 1M rows takes minutes): every
# person has 4 visits, with fixed district, age band and sex, like the demo's people.
PG_SEED = """
INSERT INTO health_visits (visit_id, person_id, district, age_band, sex, year, service, cost_eur, wait_days)
SELECT g, 'p' || (g / 4),
  (ARRAY['Altstadt','Nordhafen','Westend','Südpark','Oststadt','Bergheim','Lindenau','Mühlental',
         'Harbour Isle'])[1 + ((g / 4) * 7919) % 9],
  (ARRAY['0-9','10-19','20-29','30-39','40-49','50-59','60-69','70-79','80-89','90+'])
      [1 + ((g / 4) * 104729) % 10],
  (ARRAY['F','M'])[1 + ((g / 4) * 31) % 2],
  2022 + (g * 13) % 3,
  (ARRAY['gp','gp','dental','specialist','emergency'])[1 + (g * 17) % 5],
  40 + (g * 2654435761) % 3960,
  (g * 40503) % 60
FROM generate_series(1::bigint, :rows) AS g
"""


async def seed_pg_rows(url: str, rows: int) -> bool:
    """Make ``health_visits`` hold ``rows`` rows (kept between runs); True if it was seeded now."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            have = await conn.run_sync(lambda c: c.dialect.has_table(c, "health_visits"))
            count = select(func.count()).select_from(health_visits)
            if have and (await conn.execute(count)).scalar_one() == rows:
                return False
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(text(PG_SEED), {"rows": rows})
            await conn.execute(text("ANALYZE health_visits"))
        return True
    finally:
        await engine.dispose()


# --- the pre-DP service, measured in this run ------------------------------------------------

_DRIVER = r'''
import asyncio, json, sys, time
import httpx
from services.dataservice.app import create_app
from services.dataservice.settings import DataServiceSettings
from shared.migrations import upgrade
from tests.support import TestKeys

async def main(args):
    upgrade(__import__("pathlib").Path("services/dataservice/migrations"), args["own_url"])
    keys = TestKeys.generate()
    settings = DataServiceSettings(database_url=args["own_url"], data_url=args["data_url"],
                                   public_url=args["aud"], log_level="WARNING")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.verifier.keys = keys.key_source()
        token = keys.token(typ="at+jwt", aud=args["aud"], iss="http://127.0.0.1:8003", roles=[],
                           scope="query", ent="ent_bench", product=args["product"], version=1,
                           purpose="research", grade="L3_sensitive", limits=args["limits"])
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
            first = await c.post("/v1/query", json=args["body"], headers=headers)
            assert first.status_code == 200, first.text
            sem = asyncio.Semaphore(args["concurrency"])
            async def one():
                async with sem:
                    r = await c.post("/v1/query", json=args["body"], headers=headers)
                    assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(args["queries"])))
            print(json.dumps({"qps": args["queries"] / (time.perf_counter() - t0)}))

asyncio.run(main(json.loads(sys.argv[1])))
'''


def baseline_throughput(args: dict[str, Any], commit: str = BASELINE) -> float:
    """Queries per second of the service at ``commit`` (extracted with git archive, run in a
    child process so its modules never mix with today's)."""
    tar = subprocess.run(["git", "archive", commit, "services", "shared", "tests/support.py",
                          "tests/__init__.py"], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(tar)) as archive:
            archive.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": tmp, "SLUICE_DATASERVICE_LOG_LEVEL": "WARNING"}
        own = f"sqlite+aiosqlite:///{Path(tmp) / 'own.db'}"
        out = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps({**args, "own_url": own})],
                             cwd=tmp, env=env, capture_output=True, text=True, check=True, timeout=900)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["qps"])
