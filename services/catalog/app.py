"""Catalog service app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.catalog.settings import CatalogSettings
from shared.app import create_service_app

DESCRIPTION = """
Data products: graded, rights-declared, with plans and usage policies.

Authenticate with a platform token from the access service (`POST /oauth/token`).
Errors are RFC 9457 `application/problem+json`.
"""


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    return create_service_app(
        settings,
        title="Sluice catalog",
        description=DESCRIPTION,
        routers=[],
    )
