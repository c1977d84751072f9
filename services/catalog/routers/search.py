"""Catalog search with facets."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from services.catalog import search as engine
from services.catalog.runtime import Catalog
from services.catalog.schemas import Grade, PlanKind, SearchPage, Status
from shared.auth import CurrentPrincipal
from shared.db import ReadSession
from shared.pagination import CursorParam, decode_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["search"])


@router.get(
    "/products",
    response_model=SearchPage,
    summary="Search the catalog (any authenticated caller)",
    description="Full-text relevance over title, tags, summary and description (English stemming; "
    "every word must match), with filters, facet counts (category, grade, plan kind) and cursor "
    "pagination. Listed products by default; `status=draft|in_review|suspended|retired` is for "
    "regulators, and for providers over their own products. Counts of listed-product searches "
    "may lag by a few seconds (SLUICE_CATALOG_SEARCH_FACET_CACHE_SECONDS); hits never do.",
    responses=problem_docs(400, 401, 403, 422),
)
async def search_products(
    catalog: Catalog,
    session: ReadSession,
    principal: CurrentPrincipal,
    q: Annotated[str | None, Query(max_length=200, description="Words to look for.",
                                   examples=["commuter flows"])] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    grade: Grade | None = None,
    provider: Annotated[str | None, Query(max_length=64, description="Provider organisation id.")] = None,
    plan_kind: PlanKind | None = None,
    max_price: Annotated[int | None, Query(ge=0, description="Lowest plan price at most this "
                                           "(minor units; needs `currency`).")] = None,
    currency: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    status: Status = "listed",
    sort: Literal["relevance", "newest", "price"] = "relevance",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorParam = None,
    facets: Annotated[bool, Query(description="Compute facet counts and total.")] = True,
) -> Response:
    result = await engine.search(
        session,
        principal,
        engine.SearchQuery(
            q=q, category=category, tag=tag, grade=grade, provider=provider, plan_kind=plan_kind,
            max_price=max_price, currency=currency, status=status, sort=sort, limit=limit,
            cursor=decode_cursor(cursor), facets=facets,
        ),
        facet_cache=catalog.facets,
    )
    page = SearchPage.model_validate(
        {"items": result.items, "next_cursor": result.next_cursor, "total": result.total,
         "facets": result.facets}
    )
    # Validated once, here; returned as bytes so FastAPI does not validate the page against
    # response_model again and re-encode it (~20 hits per page, on every search).
    return Response(page.model_dump_json(), media_type="application/json")
