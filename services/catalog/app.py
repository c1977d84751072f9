"""Catalog service app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.catalog.public_lane import PublicProductLane
from services.catalog.routers import dcat, internal, privacy, products, review, search
from services.catalog.runtime import catalog_state
from services.catalog.settings import CatalogSettings
from shared.app import create_service_app
from shared.audit_relay import AUDIT_RELAY
from shared.command_relay import command_relay

DESCRIPTION = """
Data products: graded, rights-declared, with plans and usage policies.

* **Providers** create drafts, submit them (L1/L2 list at once; L3 goes to regulator review),
  edit listed products into new versions, and retire them.
* **Everybody authenticated** searches listed products and reads them, also as DCAT-AP 3 JSON-LD.
* **Regulators** work the review queue, approve or reject L3 products, suspend and reinstate.
* **Services** (orders, access) read pinned versions from `/internal/v1`.

Authenticate with a platform token from the access service (`POST /oauth/token`).
Errors are RFC 9457 `application/problem+json`; a refused product rule is a 422 whose `rule`
member names the rule.
"""


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    return create_service_app(
        settings,
        title="Sluice catalog",
        description=DESCRIPTION,
        # search before products: both own /v1/products (GET vs POST).
        routers=[search.router, products.router, privacy.router, review.router, dcat.router,
                 internal.router],
        lifespan_steps=[catalog_state],
        relays=[AUDIT_RELAY, command_relay("access", "access_url")],
        inner_middleware=[PublicProductLane],
        openapi_tags=[
            {"name": "search", "description": "Find listed products"},
            {"name": "products", "description": "Products, drafts and versions"},
            {"name": "review", "description": "Regulator review, suspension and reinstatement"},
            {"name": "interoperability", "description": "DCAT-AP 3 JSON-LD"},
            {"name": "internal", "description": "For orders and access (role `service`)"},
            {"name": "operations", "description": "Health, readiness and metrics"},
            {"name": "identity", "description": "Who the token belongs to"},
        ],
    )
