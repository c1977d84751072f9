from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class DataServiceSettings(ServiceSettings):
    service_name: ClassVar[str] = "dataservice"
    model_config = SettingsConfigDict(env_prefix="SLUICE_DATASERVICE_", extra="ignore")

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        # Data-access tokens name exactly one data service as audience (RFC 8707
        # resource): this one's public URL, unless configured otherwise.
        if "token_audience" not in self.model_fields_set:
            self.token_audience = self.public_url.rstrip("/")
