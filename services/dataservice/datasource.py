"""The provider's database: engine, reflected tables and typed filter values.

Tables are reflected once (with only the mapped columns kept), so every column a
query names is checked against the mapping *and* the real schema before any SQL is
built, and filter values are converted to the column's type up front: a wrong type
is the buyer's 422, never a database error.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, MetaData, Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dataservice.config import ProductMapping
from shared.db import create_engine

logger = logging.getLogger("sluice.dataservice")

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
                  "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """``postgresql://`` and ``sqlite://`` URLs get their async drivers; others pass as given."""
    u = make_url(url)
    if u.drivername in _ASYNC_DRIVERS:
        u = u.set(drivername=_ASYNC_DRIVERS[u.drivername])
    return u.render_as_string(hide_password=False)


def data_engine(url: str) -> AsyncEngine:
    return create_engine(async_url(url))


@dataclass(frozen=True)
class BoundProduct:
    """A product mapping joined with its reflected table."""

    mapping: ProductMapping
    table: Table

    def column(self, name: str) -> Column[Any]:
        return self.table.c[name]

    def kind(self, name: str) -> str:
        return column_kind(self.table.c[name])


def column_kind(col: Column[Any]) -> str:
    """One of int, float, str, bool, date, datetime, other (drives value checks)."""
    try:
        py = col.type.python_type
    except NotImplementedError:
        return "other"
    if py is bool:
        return "bool"
    if py is int:
        return "int"
    if py in (float, decimal.Decimal):
        return "float"
    if py is str:
        return "str"
    if py is dt.datetime:
        return "datetime"
    if py is dt.date:
        return "date"
    return "other"


MAX_STRING = 10_000


class ValueTypeError(ValueError):
    pass


def coerce_value(kind: str, value: Any) -> Any:
    """Convert one JSON filter value to the column's Python type, or raise ValueTypeError."""
    if value is None or isinstance(value, (list, dict)):
        raise ValueTypeError("a single number, string or boolean")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueTypeError("true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueTypeError("an integer")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            return value
        raise ValueTypeError("an integer (64-bit)")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and abs(value) < 1e300:
            return value if -(2**63) <= value < 2**63 or isinstance(value, float) else float(value)
        raise ValueTypeError("a finite number")
    if kind == "str":
        # NUL cannot be stored in PostgreSQL text; refuse it here rather than fail there.
        if isinstance(value, str) and "\x00" not in value and len(value) <= MAX_STRING:
            return value
        raise ValueTypeError(f"a string (at most {MAX_STRING} characters, no NUL)")
    if kind in ("date", "datetime"):
        if not isinstance(value, str):
            raise ValueTypeError("an ISO 8601 date string")
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueTypeError("an ISO 8601 date string") from exc
        return parsed.date() if kind == "date" else parsed
    if isinstance(value, (str, int, float)):
        return value
    raise ValueTypeError("a number or string")


def check_types(bp: BoundProduct) -> None:
    """The mapping's declared values and bounds fit the real column types (a provider's
    mistake here must not become a wrong answer)."""
    m = bp.mapping
    for col, values in m.domains.items():
        for v in values:
            try:
                coerce_value(bp.kind(col), v)
            except ValueTypeError as exc:
                raise ValueTypeError(f"domains of {col!r}: {v!r} is not {exc}") from exc
    for col, (lo, hi) in m.bounds.items():
        kind = bp.kind(col)
        if kind not in ("int", "float"):
            raise ValueTypeError(f"bounds given for {col!r}, which is not numeric ({kind})")
        if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ValueTypeError(f"bounds of the integer column {col!r} must be whole numbers")


class DataSource:
    """The provider's database and the products mapped onto it."""

    def __init__(self, engine: AsyncEngine, products: dict[str, ProductMapping]) -> None:
        self.engine = engine
        self.products = products
        self.bound: dict[str, BoundProduct] = {}
        self.unavailable: dict[str, str] = {}
        #: catalog product id → mapped product id (see services.dataservice.aliases)
        self.aliases: dict[str, str] = {}

    def resolve(self, product_id: str) -> str:
        """The mapped product a token's product id stands for."""
        return self.aliases.get(product_id, product_id)

    async def reflect(self) -> None:
        """Reflect every mapped table; a product whose table or columns are missing is
        marked unavailable (503 for its buyers) instead of stopping the service."""
        for pid, mapping in self.products.items():
            try:
                bound = BoundProduct(mapping, await self._reflect_one(mapping))
                check_types(bound)
                self.bound[pid] = bound
                self.unavailable.pop(pid, None)
            except (NoSuchTableError, SQLAlchemyError, KeyError, OSError, ValueTypeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self.unavailable[pid] = reason
                logger.error("product %s is unavailable: table %s cannot be used (%s)",
                             pid, mapping.table, reason)

    async def _reflect_one(self, mapping: ProductMapping) -> Table:
        schema, _, name = mapping.table.rpartition(".")
        wanted = set(mapping.column_names) | ({mapping.person_column} if mapping.person_column else set())

        def load(sync_conn: Any) -> Table:
            reflected = Table(name, MetaData(), schema=schema or None, autoload_with=sync_conn)
            missing = sorted(wanted - set(reflected.c.keys()))
            if missing:
                raise KeyError(f"columns {missing} are not in {mapping.table}")
            # Keep only the mapped columns: nothing else can ever be compiled into a query.
            return Table(name, MetaData(), *(Column(c.name, c.type, nullable=c.nullable) for c in reflected.c
                                             if c.name in wanted), schema=schema or None)

        async with self.engine.connect() as conn:
            return await conn.run_sync(load)

    async def dispose(self) -> None:
        await self.engine.dispose()
