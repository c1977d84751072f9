"""Alembic environment of the catalog service (its own database, its own history)."""

from services.catalog.models import Base
from services.catalog.settings import CatalogSettings
from shared.migrations import run_env

run_env(Base.metadata, CatalogSettings)
