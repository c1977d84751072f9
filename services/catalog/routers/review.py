"""Regulator endpoints: the review queue, approval, rejection, suspension."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from services.catalog import lifecycle, views
from services.catalog.models import Product
from services.catalog.routers.products import forget_public_view
from services.catalog.runtime import Catalog, CatalogState
from services.catalog.schemas import Note, ProductView, Reason, ReviewItem
from shared.auth import Principal, Regulator, require_roles
from shared.db import DbSession
from shared.pagination import CursorParam, LimitParam, Page, encode_cursor, read_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["review"])

#: Approving and rejecting sensitive products is the regulator's alone (not the operator's).
StrictRegulator = Annotated[Principal, Depends(require_roles("regulator"))]


async def _view(catalog: CatalogState, session: DbSession, product: Product) -> Response:
    forget_public_view(catalog, session, product.id)
    if product.draft is not None and not product.latest_version:
        body = views.draft_view(product)
    else:
        version = await lifecycle.get_version(session, product.id, product.latest_version)
        body = views.version_view(product, version, show_draft_state=True)
    return Response(ProductView.model_validate(body).model_dump_json(by_alias=True),
                    media_type="application/json")


def _queue_position(position: dict[str, Any]) -> tuple[str, int]:
    """(submitted at, pk) of the last item of the previous page; the time must parse."""
    at = str(position["t"])
    datetime.fromisoformat(at)
    return at, int(position["k"])


@router.get(
    "/review-queue",
    response_model=Page[ReviewItem],
    summary="Drafts waiting for regulator review, oldest first (regulator, operator)",
    responses=problem_docs(400, 401, 403),
)
async def review_queue(
    session: DbSession, _: Regulator, limit: LimitParam = 50, cursor: CursorParam = None
) -> Page[ReviewItem]:
    after = read_cursor(cursor, _queue_position)
    rows = await lifecycle.review_queue(session, limit=limit, after=after)
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        assert last.submitted_at is not None
        nxt = encode_cursor({"t": last.submitted_at.isoformat(), "k": last.pk})
    items = [
        ReviewItem(
            product_id=p.id, provider_org=p.provider_org,
            title=str((p.draft or {}).get("title", p.title)),
            grade=(p.draft or {}).get("grade", p.grade),
            version=p.draft_version or 0, submitted_at=p.submitted_at or p.updated_at,
        )
        for p in rows
    ]
    return Page(items=items, next_cursor=nxt)


@router.post(
    "/products/{product_id}/approve",
    response_model=ProductView,
    summary="Approve a draft under review and publish it (regulator)",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def approve(
    product_id: str, catalog: Catalog, body: Note, session: DbSession, principal: StrictRegulator
) -> Response:
    product = await lifecycle.approve(session, principal, product_id, body.note)
    return await _view(catalog, session, product)


@router.post(
    "/products/{product_id}/reject",
    response_model=ProductView,
    summary="Reject a draft under review, with the reason (regulator)",
    description="The draft goes back to the provider for editing; the reason is shown in `status_reason`.",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def reject(
    product_id: str, catalog: Catalog, body: Reason, session: DbSession, principal: StrictRegulator
) -> Response:
    product = await lifecycle.reject(session, principal, product_id, body.reason)
    return await _view(catalog, session, product)


@router.post(
    "/products/{product_id}/suspend",
    response_model=ProductView,
    summary="Suspend a listed product (regulator, operator)",
    description="Suspended products leave search and get no new orders or tokens until reinstated.",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def suspend(
    product_id: str, catalog: Catalog, body: Reason, session: DbSession, principal: Regulator
) -> Response:
    product = await lifecycle.suspend(session, principal, product_id, body.reason)
    return await _view(catalog, session, product)


@router.post(
    "/products/{product_id}/reinstate",
    response_model=ProductView,
    summary="Reinstate a suspended product (regulator, operator)",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def reinstate(
    product_id: str, catalog: Catalog, body: Reason, session: DbSession, principal: Regulator
) -> Response:
    product = await lifecycle.reinstate(session, principal, product_id, body.reason)
    return await _view(catalog, session, product)
