"""Alembic environment of the audit service (its own database, its own history)."""

from services.audit.models import Base
from services.audit.settings import AuditSettings
from shared.migrations import run_env

run_env(Base.metadata, AuditSettings)
