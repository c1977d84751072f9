from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    service_name: ClassVar[str] = "audit"
    model_config = SettingsConfigDict(env_prefix="SLUICE_AUDIT_", extra="ignore")

    log_origin: str = Field(
        default="sluice.dev/audit-log",
        description="Origin line of every checkpoint (and the signing key's name): "
        "a unique, schema-less identifier of this log.",
    )
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 checkpoint signing key as a note private key "
        "(`PRIVATE+KEY+<name>+<id>+<base64>`, made by `python -m services.audit keygen`). "
        "Unset (development only): a key is generated on first start and kept in the database.",
    )
    checkpoint_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often a new checkpoint is signed while the log grows."
    )
    max_batch_events: int = Field(
        default=1000, ge=1, description="Most events one `POST /v1/events` may carry."
    )
    export_chunk_rows: int = Field(
        default=1000, ge=1, description="Rows read per query while streaming an export."
    )
