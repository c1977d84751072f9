"""Alembic environment of the orders service (its own database, its own history)."""

from services.orders.models import Base
from services.orders.settings import OrdersSettings
from shared.migrations import run_env

run_env(Base.metadata, OrdersSettings)
