from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    service_name: ClassVar[str] = "orders"
    model_config = SettingsConfigDict(env_prefix="SLUICE_ORDERS_", extra="ignore")
