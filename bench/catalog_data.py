"""Generated catalog data for bench/bench_catalog.py: products, versions and tags straight
into the tables (the API is not used for loading).

Word frequencies follow Zipf's law (offset so that the commonest word is in about a tenth
of the products, as in real text once stop words are gone); the real domain words take
the most frequent ranks and the queries use them.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

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


def migration_fill(name: str) -> str:
    """The INSERT ... SELECT that fills a maintained table, from its migration (``name``)."""
    return str(migration_attr(name, "FILL"))


def migration_attr(name: str, attr: str) -> Any:
    """A module-level constant of a catalog migration (``name``), e.g. its ``FILL``."""
    import importlib.util
    from pathlib import Path

    path = (Path(__file__).resolve().parent.parent / "services" / "catalog" / "migrations" / "versions"
            / f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"catalog_migration_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr, None)


# Row triggers of maintained tables, off during the bulk load (each table is filled once after it).
_BULK_TRIGGERS = (("products", "word_facet_counts_ins_del"), ("products", "listed_title_words_ins_del"),
                  ("products", "listed_product_tags_ins_del"), ("product_tags", "listed_product_tags_tags"),
                  ("products", "listed_search_ins_del"))
_FILLED = (("word_facet_counts", "0006_word_facet_counts"), ("listed_title_words", "0010_listed_title_words"),
           ("listed_product_tags", "0011_listed_product_tags"),
           ("listed_search", "0012_listed_search"))
#: GIN indexes of filled tables, built after the fill as the migration does: (table, migration, names).
_BUILT_AFTER = (
    ("listed_search", "0012_listed_search", ("ix_listed_search_search", "ix_listed_search_title",
                                             "ix_listed_search_facets", "ix_listed_search_grade")),
)


async def settle(engine: Any) -> None:
    """PostgreSQL, after a bulk load or a migration of a kept database: VACUUM sets the
    visibility map (index-only scans), as autovacuum would in production; CHECKPOINT writes the
    dirty buffers out now, not during the first measured search class (as bench_audit.py does
    after its bulk load)."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        raw = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await raw.execute(text("VACUUM ANALYZE"))
        await raw.execute(text("CHECKPOINT"))


async def load(url: str, count: int, batch: int = 2000) -> float:
    from sqlalchemy import insert, select, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.catalog.models import Product, ProductTag, ProductVersion
    from services.catalog.views import version_document

    rng = random.Random(42)
    now = datetime.now(UTC)
    engine = create_async_engine(url)
    start = time.perf_counter()
    pg = engine.dialect.name == "postgresql"
    try:
        if pg:  # one index build after the load is far quicker than 100k GIN insertions, and
            # one GROUP BY of every word quicker than 100k trigger runs (word_facet_counts)
            async with engine.begin() as conn:
                await conn.execute(text("DROP INDEX ix_products_search"))
                await conn.execute(text("DROP INDEX ix_products_title_search"))
                for table, trigger in _BULK_TRIGGERS:
                    await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
        for lo in range(0, count, batch):
            made = [make_product(i, rng, now) for i in range(lo, min(count, lo + batch))]
            for p, v, _ in made:  # rendered once, as publication does
                v["public_doc"] = version_document(Product(**p), ProductVersion(**v))
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
                for _, _, names in _BUILT_AFTER:
                    for index in names:
                        await conn.execute(text(f"DROP INDEX {index}"))
                for table, migration in _FILLED:
                    await conn.execute(text(f"TRUNCATE {table}"))
                    await conn.execute(text(migration_fill(migration)))  # the migration's own fill
                for _, migration, _ in _BUILT_AFTER:
                    for stmt in migration_attr(migration, "PG_INDEXES"):
                        await conn.execute(text(stmt))
                for table, trigger in _BULK_TRIGGERS:
                    await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}"))
            await settle(engine)
        else:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO products_fts(products_fts) VALUES ('optimize')"))
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - start
