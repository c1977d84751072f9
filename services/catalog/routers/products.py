"""Provider endpoints (create, edit, submit, retire) and product reads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import dcat, lifecycle, published, rules, views
from services.catalog.runtime import Catalog, CatalogState
from services.catalog.schemas import OptionalReason, ProductSpec, ProductView, VersionSummary
from shared.auth import CurrentPrincipal, Principal, Provider, require_roles
from shared.db import DbSession, after_commit
from shared.errors import NotFound
from shared.pagination import CursorParam, LimitParam, Page, exact_int, page_of, read_cursor
from shared.params import VersionPath
from shared.problems import problem_docs
from shared.runtime import DatabaseDep

router = APIRouter(prefix="/v1/products", tags=["products"])

JSON_LD = "application/ld+json"
_JSONLD_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The product; as DCAT-AP 3 JSON-LD with `Accept: application/ld+json`.",
        "content": {JSON_LD: {"schema": {"type": "object"}}},
    }
}


def _json(view: dict[str, Any], status_code: int = 200) -> Response:
    # Validate once against the documented model, serialise in pydantic-core.
    body = ProductView.model_validate(view).model_dump_json(by_alias=True)
    return Response(body, status_code=status_code, media_type="application/json")


def forget_public_view(catalog: CatalogState, session: AsyncSession, product_id: str) -> None:
    """Drop the product's cached public view once this transaction commits. Not before: a
    public read between the drop and the commit would cache the old view again for the TTL;
    not at all if the transaction rolls back (nothing changed)."""
    cache = catalog.public_views
    after_commit(session, lambda: cache.invalidate(product_id), key=("public-view", product_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductView,
    summary="Create a product draft (provider)",
    description="Creates a product owned by the caller's organisation, as draft version 1. "
    "Rules are checked at once; a refusal is a 422 whose `rule` names the rule.",
    responses=problem_docs(401, 403, 409, 422),
)
async def create_product(spec: ProductSpec, session: DbSession, principal: Provider) -> Response:
    product = await lifecycle.create_product(session, principal, spec)
    return _json(views.draft_view(product), status.HTTP_201_CREATED)


@router.get(
    "/{product_id}",
    response_model=ProductView,
    summary="Get a product (any authenticated caller)",
    description="The latest published version. Products never published are visible only to "
    "their provider and to regulators (404 for anybody else). Send `Accept: application/ld+json` "
    "for DCAT-AP 3 JSON-LD.",
    responses={**_JSONLD_DOC, **problem_docs(401, 404)},
)
async def get_product(product_id: str, request: Request, principal: CurrentPrincipal,
                      catalog: Catalog, db: DatabaseDep) -> Response:
    cache = catalog.public_views
    wants_ld = JSON_LD in request.headers.get("accept", "")
    privileged = lifecycle.is_regulator(principal)
    ticket = cache.ticket()  # before reading: a transition committed meanwhile wins
    if not wants_ld and not privileged:
        hit = cache.get(product_id) if cache.enabled else None
        if hit is not None and not ("provider" in principal.roles and principal.org_id == hit[0]):
            return Response(hit[1], media_type="application/json")
        stored = await published.public_json(db, principal, product_id)
        if stored is not None:
            cache.put(product_id, *stored, ticket=ticket)
            return Response(stored[1], media_type="application/json")
    # Owners, regulators, JSON-LD, drafts: a read-only session (no transaction to commit).
    async with db.sessionmaker() as session:
        product, version = await lifecycle.get_visible_with_latest(session, principal, product_id)
    owner_view = lifecycle.can_see_draft(principal, product)
    if version is None:
        if wants_ld:
            raise rules.refuse(
                "jsonld-needs-publication",
                "Only published products have a DCAT description; submit the product first.",
            )
        return _json(views.draft_view(product))
    if wants_ld:
        return JSONResponse(dcat.product_document(catalog.base_url, product, version),
                            media_type=JSON_LD)
    response = _json(views.version_view(product, version, show_draft_state=owner_view))
    if not owner_view:
        cache.put(product.id, product.provider_org, bytes(response.body), ticket=ticket)
        if not privileged:
            await published.store_missing_document(db.engine, product, version)
    return response


@router.put(
    "/{product_id}",
    response_model=ProductView,
    summary="Replace the working draft (provider, own products)",
    description="Editing a published product opens a new draft version; published versions "
    "never change. Not possible while the draft is under review or after retirement (409).",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def replace_draft(
    product_id: str, spec: ProductSpec, catalog: Catalog, session: DbSession, principal: Provider
) -> Response:
    product = await lifecycle.replace_draft(session, principal, product_id, spec)
    forget_public_view(catalog, session, product.id)
    return _json(views.draft_view(product))


#: Drafts are for their provider and for regulators/operators; any other role is refused
#: (403) before the product is looked up, as docs/security.md says.
DraftReader = Annotated[Principal, Depends(require_roles("provider", "regulator", "operator"))]


@router.get(
    "/{product_id}/draft",
    response_model=ProductView,
    summary="Get the working draft (its provider, regulators)",
    responses=problem_docs(401, 403, 404),
)
async def get_draft(product_id: str, session: DbSession, principal: DraftReader) -> Response:
    product = await lifecycle.get_visible(session, principal, product_id)
    if not lifecycle.can_see_draft(principal, product) or product.draft is None:
        raise NotFound(
            f"Product {product_id} has no draft that you can see.",
            problem="draft-not-found", title="No draft",
        )
    return _json(views.draft_view(product))


@router.post(
    "/{product_id}/submit",
    response_model=ProductView,
    summary="Submit the draft (provider, own products)",
    description="L1/L2: publishes the draft as the next immutable version and lists the product. "
    "L3: sends it to regulator review (`GET /v1/review-queue`).",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def submit(product_id: str, catalog: Catalog, session: DbSession, principal: Provider) -> Response:
    product = await lifecycle.submit(session, principal, product_id)
    forget_public_view(catalog, session, product.id)
    if product.draft is not None:
        return _json(views.draft_view(product))
    version = await lifecycle.get_version(session, product.id, product.latest_version)
    return _json(views.version_view(product, version, show_draft_state=True))


@router.post(
    "/{product_id}/retire",
    response_model=ProductView,
    summary="Retire a product for good (provider, own products)",
    description="No new orders; existing orders keep their pinned versions.",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def retire(
    product_id: str, body: OptionalReason, catalog: Catalog, session: DbSession, principal: Provider
) -> Response:
    product = await lifecycle.retire(session, principal, product_id, body.reason)
    forget_public_view(catalog, session, product.id)
    if not product.latest_version:
        return _json(views.draft_view(product))
    version = await lifecycle.get_version(session, product.id, product.latest_version)
    return _json(views.version_view(product, version, show_draft_state=True))


@router.get(
    "/{product_id}/versions",
    response_model=Page[VersionSummary],
    summary="List a product's published versions, oldest first (whoever can see the product)",
    responses=problem_docs(400, 401, 404),
)
async def list_versions(
    product_id: str, session: DbSession, principal: CurrentPrincipal,
    limit: LimitParam = 100, cursor: CursorParam = None,
) -> Page[VersionSummary]:
    product = await lifecycle.get_visible(session, principal, product_id)
    after = read_cursor(cursor, lambda p: exact_int(p["v"])) or 0
    rows = list(await lifecycle.list_versions(session, product.id, after=after, limit=limit + 1))
    page, nxt = page_of(rows, limit, lambda r: {"v": r.version})
    return Page(items=[VersionSummary.model_validate(r, from_attributes=True) for r in page],
                next_cursor=nxt)


@router.get(
    "/{product_id}/versions/{version}",
    response_model=ProductView,
    summary="Get one frozen version (whoever can see the product)",
    description="Published versions never change: this is what an order pinned.",
    responses=problem_docs(401, 404),
)
async def get_version(
    product_id: str, version: VersionPath, session: DbSession, principal: CurrentPrincipal
) -> Response:
    product = await lifecycle.get_visible(session, principal, product_id)
    row = await lifecycle.get_version(session, product.id, version)
    owner_view = lifecycle.can_see_draft(principal, product)
    return _json(views.version_view(product, row, show_draft_state=owner_view))
