"""Contribution-bounded copies of L3 data: one per product and release period.

Differential privacy needs a bound on what one person contributes. At the first L3 query
of a release period the service reads the product's table once (read only) and keeps, per
person, at most ``max_rows_per_person`` rows:

    SELECT <exposed columns>, clamp(<bounded columns>) FROM (
      SELECT ..., row_number() OVER (PARTITION BY <person> ORDER BY <exposed columns>) AS rn
      FROM <table>) WHERE rn <= :m

The order inside one person's rows is deterministic (by the exposed columns, in mapping
order), so a copy is reproducible; which rows are kept depends only on that person's own
rows, as the sensitivity argument requires. Values of columns with ``bounds`` are stored
clamped beside the raw ones (filters and groups use the raw values, sums the clamped ones).
The person column is *not* copied: after bounding nothing needs it.

The copy lives in the dataservice's **own database** (never in the provider's: the service
does not write there), as table ``dp_<product hash>_<period>_<random>``, registered in
``dp_releases``. Replicas share it through that registry; two building at once keep the
first registered copy and drop theirs. A new period makes a new copy from the provider's
data as it is then, and the previous period's copies are dropped. Every L3 answer of the
period is a plain ``GROUP BY`` on the copy, which is what makes DP answers as fast as
plain SQL (bench/bench_dataservice.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, MetaData, Table, case, delete, func, insert, literal, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dataservice.config import ProductMapping
from services.dataservice.datasource import BoundProduct
from services.dataservice.models import dp_releases
from shared.db import utcnow

logger = logging.getLogger("sluice.dataservice.releases")

#: Rows read from the provider and written to the copy per batch.
BATCH_ROWS = 5000


@dataclass(frozen=True)
class Release:
    """One period's bounded copy of one product, queryable like the product itself."""

    product_id: str
    period: str
    table_name: str
    rows: int
    bound: BoundProduct  # the mapping over the copy (raw exposed columns keep their names)
    clamped: dict[str, str]  # bounded column → its clamped column in the copy
    mapping: ProductMapping  # the provider's mapping it was made for

    def clamped_column(self, name: str) -> Column[Any]:
        return self.bound.table.c[self.clamped[name]]


def _copy_columns(bp: BoundProduct) -> tuple[list[str], dict[str, str]]:
    """The copy's raw columns (exposed, unmasked) and a clamped column per bounded one."""
    m = bp.mapping
    raw = [n for n in m.column_names if n not in m.masked]
    clamped: dict[str, str] = {}
    for i, name in enumerate(n for n in raw if n in m.bounds):
        candidate = f"clamped_{i}"
        while candidate in raw:
            candidate = "_" + candidate
        clamped[name] = candidate
    return raw, clamped


def _layout(bp: BoundProduct, table_name: str) -> Table:
    raw, clamped = _copy_columns(bp)
    cols = [Column(n, bp.column(n).type.as_generic(), nullable=True) for n in raw]
    cols += [Column(c, bp.column(n).type.as_generic(), nullable=True) for n, c in clamped.items()]
    return Table(table_name, MetaData(), *cols)


def _clamp(col: ColumnElement[Any], lo: float, hi: float, integer: bool) -> ColumnElement[Any]:
    low, high = (int(lo), int(hi)) if integer else (lo, hi)
    return case((col < low, literal(low)), (col > high, literal(high)), else_=col)


def bounded_select(bp: BoundProduct) -> Any:
    """At most ``max_rows_per_person`` rows per person, bounded columns clamped."""
    m = bp.mapping
    assert m.person_column is not None
    raw, clamped = _copy_columns(bp)
    src = bp.table
    rn = func.row_number().over(partition_by=src.c[m.person_column],
                                order_by=[src.c[n] for n in raw]).label("sluice_rn")
    inner = select(*(src.c[n] for n in raw), rn).subquery("per_person")
    outs: list[ColumnElement[Any]] = [inner.c[n] for n in raw]
    for name, label in clamped.items():
        lo, hi = m.bounds[name]
        outs.append(_clamp(inner.c[name], lo, hi, bp.kind(name) == "int").label(label))
    return select(*outs).where(inner.c.sluice_rn <= m.max_rows_per_person)


def table_prefix(product_id: str) -> str:
    return f"dp_{hashlib.sha256(product_id.encode()).hexdigest()[:12]}_"


class ReleaseUnavailable(Exception):
    """The copy could not be made (the provider's database failed); nothing was charged."""


class Releases:
    """Finds or builds the current release of a product (one build at a time per process)."""

    def __init__(self, provider: AsyncEngine, own: AsyncEngine, *, batch_rows: int = BATCH_ROWS) -> None:
        self.provider = provider
        self.own = own
        self.batch_rows = batch_rows
        self._ready: dict[tuple[str, str], Release] = {}
        self._building: dict[tuple[str, str], asyncio.Task[Release]] = {}

    async def current(self, product_id: str, bp: BoundProduct, period: str) -> Release:
        """The release of ``period``; the first caller builds it, the others wait for it.
        The build runs as its own task, so a caller that gives up does not cancel it."""
        key = (product_id, period)
        release = self._ready.get(key)
        if release is not None and release.mapping is bp.mapping:
            return release
        task = self._building.get(key)
        if task is None:
            task = asyncio.create_task(self._find_or_build(product_id, bp, period),
                                       name=f"release-{product_id}-{period}")
            self._building[key] = task
            task.add_done_callback(lambda _t: self._building.pop(key, None))
        release = await asyncio.shield(task)
        self._ready[key] = release
        return release

    async def prepare(self, products: dict[str, BoundProduct],
                      period_of: Callable[[BoundProduct], str]) -> None:
        """Make sure every L3 product's current release exists (a background task calls this
        at start and every minute, so queries rarely wait for a copy)."""
        for product_id, bp in products.items():
            if bp.mapping.privacy is None or bp.mapping.person_column is None:
                continue
            try:
                await self.current(product_id, bp, period_of(bp))
            except ReleaseUnavailable as exc:
                logger.warning("release of %s not prepared (%s); the next query retries", product_id, exc)

    async def _find_or_build(self, product_id: str, bp: BoundProduct, period: str) -> Release:
        found = await self._registered(product_id, period)
        if found is not None and await self._has_layout(bp, found[0]):
            return self._release(product_id, period, bp, *found)
        name = f"{table_prefix(product_id)}{period.replace('-', '_').lower()}_{secrets.token_hex(3)}"
        rows = await self._build(bp, name)
        table_name, rows = await self._register(product_id, period, name, rows, replace=found)
        if table_name != name:
            await self._drop(name)  # another replica registered its copy first
        await self._drop_older(product_id, period)
        logger.info("release %s of %s ready: %d rows (at most %d per person) in %s", period,
                    product_id, rows, bp.mapping.max_rows_per_person, table_name)
        return self._release(product_id, period, bp, table_name, rows)

    def _release(self, product_id: str, period: str, bp: BoundProduct, table_name: str,
                 rows: int) -> Release:
        _, clamped = _copy_columns(bp)
        copy = BoundProduct(_mapping_of_copy(bp.mapping), _layout(bp, table_name))
        return Release(product_id, period, table_name, rows, copy, clamped, bp.mapping)

    async def _registered(self, product_id: str, period: str) -> tuple[str, int] | None:
        async with self.own.connect() as conn:
            row = (await conn.execute(select(dp_releases.c.table_name, dp_releases.c.rows).where(
                dp_releases.c.product_id == product_id, dp_releases.c.period == period))).first()
        return None if row is None else (str(row[0]), int(row[1]))

    async def _has_layout(self, bp: BoundProduct, table_name: str) -> bool:
        """The registered copy has every column the mapping needs now (it may have changed)."""
        wanted = {c.name for c in _layout(bp, table_name).c}

        def columns(sync_conn: Any) -> set[str]:
            from sqlalchemy import inspect
            insp = inspect(sync_conn)
            if not insp.has_table(table_name):
                return set()
            return {c["name"] for c in insp.get_columns(table_name)}

        async with self.own.connect() as conn:
            return wanted <= await conn.run_sync(columns)

    async def _build(self, bp: BoundProduct, name: str) -> int:
        table = _layout(bp, name)
        rows = 0
        try:
            async with self.own.begin() as own:
                await own.run_sync(table.create)
                write = await _writer(own, table)
                async with self.provider.connect() as src:
                    result = await src.stream(bounded_select(bp))
                    async for batch in result.partitions(self.batch_rows):
                        await write([tuple(r) for r in batch])
                        rows += len(batch)
        except SQLAlchemyError as exc:
            logger.error("could not build the bounded copy %s of %s: %s", name, bp.mapping.table, exc)
            raise ReleaseUnavailable(str(exc)) from exc
        return rows

    async def _register(self, product_id: str, period: str, name: str, rows: int,
                        replace: tuple[str, int] | None) -> tuple[str, int]:
        async with self.own.begin() as conn:
            if replace is not None:  # the mapping outgrew the registered copy
                await conn.execute(delete(dp_releases).where(
                    dp_releases.c.product_id == product_id, dp_releases.c.period == period,
                    dp_releases.c.table_name == replace[0]))
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(dp_releases).values(
                        product_id=product_id, period=period, table_name=name, rows=rows,
                        built_at=utcnow()))
            except IntegrityError:
                pass
        if replace is not None:
            await self._drop(replace[0])
        found = await self._registered(product_id, period)
        assert found is not None
        return found

    async def _drop_older(self, product_id: str, period: str) -> None:
        async with self.own.begin() as conn:
            old = (await conn.execute(select(dp_releases.c.table_name).where(
                dp_releases.c.product_id == product_id, dp_releases.c.period != period))).all()
            await conn.execute(delete(dp_releases).where(
                dp_releases.c.product_id == product_id, dp_releases.c.period != period))
        for (name,) in old:
            await self._drop(str(name))

    async def _drop(self, name: str) -> None:
        try:
            async with self.own.begin() as conn:
                await conn.run_sync(lambda c: Table(name, MetaData()).drop(c, checkfirst=True))
        except SQLAlchemyError as exc:  # best effort: a leftover table holds no privacy risk
            logger.warning("could not drop the old bounded copy %s: %s", name, exc)


async def _writer(own: AsyncConnection, table: Table) -> Callable[[list[tuple[Any, ...]]], Awaitable[None]]:
    """Batches into the copy: PostgreSQL's COPY when the own database is PostgreSQL (a
    million rows in seconds), multi-row INSERTs otherwise."""
    columns = list(table.c.keys())
    if own.dialect.name == "postgresql":
        raw = (await own.get_raw_connection()).driver_connection
        assert raw is not None

        async def copy(batch: list[tuple[Any, ...]]) -> None:
            await raw.copy_records_to_table(table.name, records=batch, columns=columns)

        return copy

    async def insert_rows(batch: list[tuple[Any, ...]]) -> None:
        await own.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in batch])

    return insert_rows


def _mapping_of_copy(mapping: ProductMapping) -> ProductMapping:
    """The mapping as seen on the copy: no person column (it is not copied)."""
    return mapping.model_copy(update={"person_column": None})
