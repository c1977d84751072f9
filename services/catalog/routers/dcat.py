"""The whole catalog as DCAT-AP 3 JSON-LD, paginated: public, for harvesters.

No token (data.europa.eu and CKAN's dcat harvester crawl without one), listed products only,
rate-limited per client address, and cacheable: a strong ETag over the page's bytes, so a
harvester revisiting with If-None-Match gets 304 when nothing changed."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import and_, select

from services.catalog import dcat
from services.catalog.models import Product, ProductVersion
from services.catalog.runtime import Catalog
from services.catalog.statuses import ProductStatus
from shared.db import DbSession
from shared.pagination import CursorParam, encode_cursor, read_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["interoperability"])


@router.get(
    "/catalog.jsonld",
    summary="The catalog of listed products as DCAT-AP 3 JSON-LD (anyone, no token; rate-limited)",
    description="A `dcat:Catalog` page of listed products, publishers named; follow "
    "`hydra:view.hydra:next` for the next page. Public: no token. Send the `ETag` back as "
    "`If-None-Match` to get 304 when the page did not change. Rate-limited per client address "
    "(429 with Retry-After).",
    response_class=JSONResponse,
    responses={200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}},
               304: {"description": "Not modified (If-None-Match matched the ETag)"},
               **problem_docs(400, 429)},
)
async def catalog(
    request: Request,
    state: Catalog,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorParam = None,
) -> Response:
    state.public_catalog_limiter.check(request.client.host if request.client else "unknown")
    after = read_cursor(cursor, lambda p: int(p["k"]),
                        "The cursor is not valid; pass back the `hydra:next` link unchanged.")
    stmt = (
        select(Product, ProductVersion)
        .join(ProductVersion, and_(ProductVersion.product_id == Product.id,
                                   ProductVersion.version == Product.latest_version))
        .where(Product.status == ProductStatus.LISTED)
        .order_by(Product.pk)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(Product.pk > after)
    pairs = [(p, v) for p, v in (await session.execute(stmt)).all()]
    base = state.base_url
    path = f"{base}/v1/catalog.jsonld"
    next_url = None
    if len(pairs) > limit:
        pairs = pairs[:limit]
        next_url = f"{path}?{urlencode({'limit': limit, 'cursor': encode_cursor({'k': pairs[-1][0].pk})})}"
    page_url = f"{path}?{urlencode({'limit': limit, **({'cursor': cursor} if cursor else {})})}"
    doc = dcat.catalog_document(base, pairs, page_url=page_url, first_url=f"{path}?limit={limit}",
                                next_url=next_url)
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={CACHE_SECONDS}"}
    tags = _etags(request.headers.get("if-none-match"))
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/ld+json", headers=headers)


#: How long harvesters and caches may reuse a page without asking again.
CACHE_SECONDS = 60


def _etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compared by their opaque tag)."""
    if not header:
        return set()
    if header.strip() == "*":
        return {"*"}
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}

