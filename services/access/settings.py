from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AccessSettings(ServiceSettings):
    service_name: ClassVar[str] = "access"
    model_config = SettingsConfigDict(env_prefix="SLUICE_ACCESS_", extra="ignore")

    token_lifetime_seconds: int = Field(
        default=900, ge=60, le=3600, description="Lifetime of platform tokens (default 15 minutes)."
    )
    bootstrap_client_id: str | None = Field(
        default=None, description="Client id of the first operator client (created on an empty database)."
    )
    bootstrap_client_secret: SecretStr | None = Field(
        default=None,
        description="Its secret; when unset a secret is generated and printed once on first start.",
    )
    bootstrap_service_clients: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='JSON map of internal service client ids to secrets, e.g. {"svc-catalog": "..."}; '
        "created (role `service`) at start when missing.",
    )
    signing_key_passphrase: SecretStr | None = Field(
        default=None,
        description="Encrypts the RSA signing keys at rest in the database. Set it in production.",
    )
    signing_key_bits: int = Field(default=2048, description="RSA modulus size for new signing keys.")
    key_refresh_seconds: float = Field(
        default=30.0, description="How often a replica re-reads signing keys (to see rotations)."
    )

    data_token_lifetime_seconds: int = Field(
        default=900, ge=30, le=900,
        description="Lifetime of data-access tokens (at most 15 minutes, never past the entitlement's end).",
    )
    catalog_status_cache_seconds: float = Field(
        default=3.0, ge=0, le=10,
        description="How long a product's catalog status is cached when issuing data-access tokens.",
    )

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        # The access service is the issuer: unless told otherwise, `iss` is its
        # own public URL (other services expect it at their ACCESS_URL).
        if "token_issuer" not in self.model_fields_set:
            self.token_issuer = self.public_url.rstrip("/")
