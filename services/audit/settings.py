from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    service_name: ClassVar[str] = "audit"
    model_config = SettingsConfigDict(env_prefix="SLUICE_AUDIT_", extra="ignore")
