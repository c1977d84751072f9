"""Alembic environment of the access service (its own database, its own history)."""

from services.access.models import Base
from services.access.settings import AccessSettings
from shared.migrations import run_env

run_env(Base.metadata, AccessSettings)
