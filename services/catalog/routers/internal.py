"""Internal API for orders and access (role `service`), as pinned in docs/contracts.md."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from services.catalog import lifecycle, views
from services.catalog.models import Product
from services.catalog.schemas import InternalProduct, InternalVersion
from shared.auth import Service
from shared.db import DbSession
from shared.errors import NotFound
from shared.params import VersionPath
from shared.problems import problem_docs

router = APIRouter(prefix="/internal/v1", tags=["internal"])


async def _product(session: DbSession, product_id: str) -> Product:
    product = (await session.execute(select(Product).where(Product.id == product_id))).scalar_one_or_none()
    if product is None:
        raise NotFound(f"No product {product_id}.", problem="product-not-found", title="Product not found")
    return product


@router.get(
    "/products/{product_id}",
    response_model=InternalProduct,
    summary="A product's status and latest version (service)",
    responses=problem_docs(401, 403, 404),
)
async def get_product(product_id: str, session: DbSession, _: Service) -> InternalProduct:
    return InternalProduct.model_validate(views.internal_product(await _product(session, product_id)))


@router.get(
    "/products/{product_id}/versions/{version}",
    response_model=InternalVersion,
    summary="A pinned, frozen version with plans, policy and guardrails (service)",
    description="The version never changes; `status` is the product's current status, so callers "
    "can refuse orders or tokens for suspended or retired products.",
    responses=problem_docs(401, 403, 404),
)
async def get_version(
    product_id: str, version: VersionPath, session: DbSession, _: Service
) -> InternalVersion:
    product = await _product(session, product_id)
    row = await lifecycle.get_version(session, product.id, version)
    return InternalVersion.model_validate(views.internal_version(product, row))
