"""Alembic environment of the dataservice service (its own database, its own history)."""

from services.dataservice.models import Base
from services.dataservice.settings import DataServiceSettings
from shared.migrations import run_env

run_env(Base.metadata, DataServiceSettings)
