"""Published products for everybody but their owner and regulators, as stored bytes.

A published version never changes, so its public JSON is rendered once, at publication
(``product_versions.public_doc``, see :func:`views.version_document`). Serving a product to
the public is then one primary-key read of the product's lifecycle state joined to that
document (a hot read: one prepared statement, autocommit, shared/hot_reads.py) and a splice
of two JSON texts: no ORM objects, no JSON column decoding, no model validation per
request. Owners and regulators, who also see drafts and reasons, take the general path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalog import views
from services.catalog.models import Product, ProductVersion
from shared.auth import Principal
from shared.db import Database
from shared.hot_reads import GroupedRead, HotQuery

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


#: The product's state and stored document: grouped with concurrent reads on PostgreSQL, a read
#: of its own on SQLite.
_GROUPED_READ = GroupedRead(_READ, _READ_MANY, key="product_id", name="catalog-public-group-reader")


async def _read(db: Database, product_id: str) -> Mapping[str, Any] | None:
    return await _GROUPED_READ.read(db, product_id)


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
