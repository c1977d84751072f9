"""``PUT /v1/products/{id}/privacy-budget``: an L3 product's data service reports its budget.

The data service's own ledger is the single source of truth for a product's privacy budget
(it charges every L3 answer). The catalog keeps the last report as a labelled copy with its
as-of time, so buyers see the total and what remains beside the plans that sell ε. Reports
arrive through the data service's outbox, possibly late or twice: an older report never
replaces a newer one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from services.catalog import rules
from services.catalog.models import Product
from services.catalog.routers.products import forget_public_view
from services.catalog.runtime import Catalog
from services.catalog.schemas import PrivacyBudget, PrivacyBudgetReport
from shared.auth import Principal, require_roles
from shared.db import DbSession
from shared.errors import NotFound
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/products", tags=["products"])
Reporter = Annotated[Principal, Depends(require_roles("provider", "service"))]


def budget_view(report: PrivacyBudgetReport) -> dict[str, Any]:
    view = PrivacyBudget(
        period=report.period, renews_at=report.renews_at, epsilon_total=report.epsilon_total,
        epsilon_spent=report.epsilon_spent,
        epsilon_remaining=max(0.0, round(report.epsilon_total - report.epsilon_spent, 6)),
        delta_total=report.delta_total, delta_spent=report.delta_spent, as_of=report.as_of)
    return view.model_dump(mode="json")


@router.put(
    "/{product_id}/privacy-budget",
    response_model=PrivacyBudget,
    summary="Report an L3 product's privacy budget (its data service: provider of the product, or service)",
    responses=problem_docs(401, 403, 404, 422),
)
async def report_privacy_budget(product_id: str, report: PrivacyBudgetReport, catalog: Catalog,
                                session: DbSession, principal: Reporter) -> dict[str, Any]:
    product = (await session.execute(
        select(Product).where(Product.id == product_id).with_for_update())).scalar_one_or_none()
    if product is None or ("service" not in principal.roles and product.provider_org != principal.org_id):
        raise NotFound(f"No product {product_id} among your organisation's products.",
                       problem="product-not-found", title="Product not found")
    if product.grade != "L3_sensitive":
        raise rules.refuse("privacy-budget-l3-only",
                           "Only L3_sensitive products have a privacy budget; nothing to report.")
    stored = product.privacy_budget
    if stored is None or PrivacyBudget.model_validate(stored).as_of <= report.as_of:
        product.privacy_budget = budget_view(report)
        forget_public_view(catalog, session, product.id)
    return dict(product.privacy_budget or {})
