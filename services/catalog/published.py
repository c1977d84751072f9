"""Published products for everybody but their owner and regulators, as stored bytes.

A published version never changes, so its public JSON is rendered once, at publication
(``product_versions.public_doc``, see :func:`views.version_document`). Serving a product to
the public is then one primary-key read of the product's lifecycle state joined to that
document (a hot read: one prepared statement, autocommit, shared/hot_reads.py) and a splice
of two JSON texts: no ORM objects, no JSON column decoding, no model validation per
request. Owners and regulators, who also see drafts and reasons, take the general path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalog import views
from services.catalog.models import Product, ProductVersion
from shared.auth import Principal
from shared.db import Database
from shared.hot_reads import HotQuery, fail_waiters

logger = logging.getLogger("sluice.catalog")

_P, _V = Product.__table__.c, ProductVersion.__table__.c
_STATE = (_P.id, _P.provider_org, _P.status, _P.latest_version, _P.privacy_budget, _P.created_at,
          _P.updated_at, _P.listed_at)
_READ = HotQuery(
    select(*_STATE, _V.public_doc)
    .select_from(Product.__table__.outerjoin(
        ProductVersion.__table__, and_(_V.product_id == _P.id, _V.version == _P.latest_version)))
    .where(_P.id == bindparam("product_id"))
)
_READ_MANY = HotQuery(
    select(*_STATE, _V.public_doc)
    .select_from(Product.__table__.outerjoin(
        ProductVersion.__table__, and_(_V.product_id == _P.id, _V.version == _P.latest_version)))
    .where(_P.id == any_(bindparam("ids", type_=ARRAY(String))))
)


class _GroupedReads:
    """The public reads that arrive while the previous one is in flight, as one statement
    (PostgreSQL): one round trip for all of them instead of one each — on this machine a
    round trip's socket work costs more CPU than the read (docs/performance.md). A read starts
    only after every request in it has asked, so each sees everything committed before it
    asked (a suspension shows at once, as with a read of its own). A failed read fails every
    request in it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._waiting: dict[str, list[asyncio.Future[Mapping[str, Any] | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def read(self, product_id: str) -> Mapping[str, Any] | None:
        waiter: asyncio.Future[Mapping[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(product_id, []).append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="catalog-public-group-reader")
        return await waiter

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                rows = await _READ_MANY.all(self.db.hot, self.db.engine, ids=list(batch))
            except BaseException as exc:
                fail_waiters((w for ws in batch.values() for w in ws), exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            found = {row["id"]: row for row in rows}
            for product_id, waiters in batch.items():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(found.get(product_id))


_GROUPED: weakref.WeakKeyDictionary[Database, _GroupedReads] = weakref.WeakKeyDictionary()


async def _read(db: Database, product_id: str) -> Mapping[str, Any] | None:
    """The product's state and stored document: grouped with concurrent reads on PostgreSQL,
    a read of its own on SQLite."""
    if not db.hot.postgres:
        return await _READ.one_or_none(db.hot, db.engine, product_id=product_id)
    reader = _GROUPED.get(db)
    if reader is None:
        reader = _GROUPED[db] = _GroupedReads(db)
    return await reader.read(product_id)


async def public_json(db: Database, principal: Principal, product_id: str) -> tuple[str, bytes] | None:
    """(provider org, body) of a product as the public sees it; None when the caller must take
    the general path (it owns the product, the product is unknown or unpublished, or its
    version predates stored documents). Regulators never come here."""
    row = await _read(db, product_id)
    if row is None or row["public_doc"] is None or row["latest_version"] == 0:
        return None
    if "provider" in principal.roles and principal.org_id == row["provider_org"]:
        return None
    state: dict[str, Any] = {c.name: row[c.name] for c in _STATE}
    if isinstance(state["privacy_budget"], str):  # asyncpg hands a json column over as text
        state["privacy_budget"] = json.loads(state["privacy_budget"])
    return row["provider_org"], views.public_view_json(state, row["public_doc"])


async def store_missing_document(engine: AsyncEngine, product: Product, version: ProductVersion) -> None:
    """Render and keep the document of a version published before documents were stored
    (migration 0004), so its next public read is a stored one. Best effort: the general
    path already answered."""
    if version.public_doc is not None:
        return
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(ProductVersion)
                .where(_V.product_id == version.product_id, _V.version == version.version,
                       _V.public_doc.is_(None))
                .values(public_doc=views.version_document(product, version))
            )
    except Exception:  # the read succeeded; a failed write only delays the stored document
        logger.warning("could not store the public document of %s v%s", product.id, version.version,
                       exc_info=True)
