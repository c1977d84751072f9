"""Deterministic synthetic demo data (seeded RNG), so `make run` works out of the box.

Two tables in the provider's data database:

* ``transit_stats``: monthly public-transport figures per district and mode (non-personal).
* ``health_visits``: one row per health-service visit of a few thousand synthetic people,
  keyed by a pseudonym ``person_id``; one small district ("Harbour Isle", 4 people) makes
  the minimum-group-size rule visible.

Nothing here is real data: every value comes from ``random.Random(seed)``.
"""

from __future__ import annotations

import asyncio
import fcntl
import random
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

DEMO_SEED = 20261128
DISTRICTS = ("Altstadt", "Nordhafen", "Westend", "Südpark", "Oststadt", "Bergheim", "Lindenau",
             "Mühlental")
SMALL_DISTRICT = "Harbour Isle"
SMALL_DISTRICT_PEOPLE = 4
MODES = ("bus", "tram", "metro", "ferry")
AGE_BANDS = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+")
AGE_WEIGHTS = (10, 10, 13, 14, 14, 13, 11, 8, 5, 2)
SERVICES = ("gp", "dental", "specialist", "emergency")
SERVICE_WEIGHTS = (50, 20, 20, 10)
SERVICE_COST = {"gp": (40, 120), "dental": (60, 400), "specialist": (150, 900),
                "emergency": (300, 4000)}
YEARS = (2022, 2023, 2024)
MAX_VISITS_PER_PERSON = 6

metadata = MetaData()
transit_stats = Table(
    "transit_stats", metadata,
    Column("id", Integer, primary_key=True),
    Column("district", String(40), nullable=False),
    Column("year", Integer, nullable=False),
    Column("month", Integer, nullable=False),
    Column("mode", String(10), nullable=False),
    Column("trips", Integer, nullable=False),
    Column("avg_delay_min", Float, nullable=False),
    Column("on_time_pct", Float, nullable=False),
    # Business-internal, not exposed by the demo mapping (a provider could mask it as L2).
    Column("operator_contact", String(80), nullable=False),
)
health_visits = Table(
    "health_visits", metadata,
    Column("visit_id", Integer, primary_key=True),
    Column("person_id", String(16), nullable=False, index=True),
    Column("district", String(40), nullable=False),
    Column("age_band", String(8), nullable=False),
    Column("sex", String(1), nullable=False),
    Column("year", Integer, nullable=False),
    Column("service", String(12), nullable=False),
    Column("cost_eur", Integer, nullable=False),
    Column("wait_days", Integer, nullable=False),
)


def transit_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for district in (*DISTRICTS, SMALL_DISTRICT):
        size = rng.uniform(0.3, 1.5) if district != SMALL_DISTRICT else 0.05
        for year in YEARS:
            for month in range(1, 13):
                for mode in MODES:
                    if mode == "ferry" and district not in ("Nordhafen", SMALL_DISTRICT):
                        continue
                    base = {"bus": 90_000, "tram": 70_000, "metro": 150_000, "ferry": 8_000}[mode]
                    season = 1.0 - 0.15 * (month in (7, 8))
                    delay = max(0.0, rng.gauss(2.5 if mode == "bus" else 1.2, 0.8))
                    rows.append({
                        "district": district, "year": year, "month": month, "mode": mode,
                        "trips": int(base * size * season * rng.uniform(0.9, 1.1)),
                        "avg_delay_min": round(delay, 2),
                        "on_time_pct": round(min(100.0, max(50.0, 97 - delay * 6 + rng.gauss(0, 2))), 1),
                        "operator_contact": f"dispatch.{district.lower()[:4]}.{mode}@transit.example",
                    })
    return rows


def health_rows(rng: random.Random, people: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    visit_id = 0
    for n in range(people):
        district = SMALL_DISTRICT if n < SMALL_DISTRICT_PEOPLE else rng.choice(DISTRICTS)
        age_band = rng.choices(AGE_BANDS, AGE_WEIGHTS)[0]
        sex = rng.choice("FM")
        person_id = f"p{rng.getrandbits(48):012x}"
        for _ in range(rng.randint(1, MAX_VISITS_PER_PERSON)):
            service = rng.choices(SERVICES, SERVICE_WEIGHTS)[0]
            lo, hi = SERVICE_COST[service]
            visit_id += 1
            rows.append({
                "visit_id": visit_id, "person_id": person_id, "district": district,
                "age_band": age_band, "sex": sex, "year": rng.choice(YEARS), "service": service,
                "cost_eur": int(rng.uniform(lo, hi)),
                "wait_days": int(rng.expovariate(1 / (3 if service != "specialist" else 30))),
            })
    return rows


async def demo_tables_present(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    return {"transit_stats", "health_visits"} <= names


async def seed_demo(engine: AsyncEngine, *, people: int = 3000, seed: int = DEMO_SEED) -> int:
    """(Re)create the demo tables with deterministic content; return the visit rows written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data, not secrets
    transit = transit_rows(rng)
    health = health_rows(rng, people)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        for table, rows in ((transit_stats, transit), (health_visits, health)):
            for start in range(0, len(rows), 5000):
                await conn.execute(insert(table), rows[start:start + 5000])
    return len(health)


async def seed_demo_once(engine: AsyncEngine, *, people: int = 3000) -> int:
    """Seed unless the demo tables exist; return the visit rows written (0: already there).

    Replicas of the data service share the demo file and start at the same moment: an
    exclusive lock on ``<file>.seed-lock`` around the check and the seeding makes one of them
    seed and the others find the tables, instead of each dropping and refilling them under
    the others' feet. (The demo database is always a SQLite file, see ``uses_demo``.)
    """
    lock_path = Path(str(engine.url.database) + ".seed-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = await asyncio.to_thread(lock_path.open, "w")
    with lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            if await demo_tables_present(engine):
                return 0
            return await seed_demo(engine, people=people)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
