"""The whole catalog as DCAT-AP 3 JSON-LD, paginated."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import and_, select

from services.catalog import dcat
from services.catalog.models import Product, ProductVersion
from shared.auth import CurrentPrincipal
from shared.db import DbSession
from shared.errors import BadRequest
from shared.pagination import CursorParam, decode_cursor, encode_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["interoperability"])


@router.get(
    "/catalog.jsonld",
    summary="The catalog of listed products as DCAT-AP 3 JSON-LD (any authenticated caller)",
    description="A `dcat:Catalog` page; follow `hydra:view.hydra:next` for the next page.",
    response_class=JSONResponse,
    responses={200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}},
               **problem_docs(400, 401)},
)
async def catalog(
    request: Request,
    session: DbSession,
    _: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorParam = None,
) -> JSONResponse:
    pos = decode_cursor(cursor)
    stmt = (
        select(Product, ProductVersion)
        .join(ProductVersion, and_(ProductVersion.product_id == Product.id,
                                   ProductVersion.version == Product.latest_version))
        .where(Product.status == "listed")
        .order_by(Product.pk)
        .limit(limit + 1)
    )
    if pos is not None:
        try:
            stmt = stmt.where(Product.pk > int(pos["k"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest("The cursor is not valid; pass back the `hydra:next` link unchanged.",
                             problem="invalid-cursor", title="Invalid cursor") from exc
    pairs = [(p, v) for p, v in (await session.execute(stmt)).all()]
    base = str(request.app.state.settings.public_url).rstrip("/")
    path = f"{base}/v1/catalog.jsonld"
    next_url = None
    if len(pairs) > limit:
        pairs = pairs[:limit]
        next_url = f"{path}?{urlencode({'limit': limit, 'cursor': encode_cursor({'k': pairs[-1][0].pk})})}"
    page_url = f"{path}?{urlencode({'limit': limit, **({'cursor': cursor} if cursor else {})})}"
    doc = dcat.catalog_document(base, pairs, page_url=page_url, first_url=f"{path}?limit={limit}",
                                next_url=next_url)
    return JSONResponse(doc, media_type="application/ld+json")
