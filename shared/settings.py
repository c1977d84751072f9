"""Settings base shared by every service.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix``
(``SLUICE_<SERVICE>_``), so one process environment can configure all five
services without collisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTS: dict[str, int] = {
    "catalog": 8001,
    "orders": 8002,
    "access": 8003,
    "audit": 8004,
    "dataservice": 8010,
}

#: Audience of platform API tokens (all platform services accept it).
PLATFORM_AUDIENCE = "sluice-api"


def default_sqlite_url(service: str) -> str:
    """A SQLite file under ``var/`` (relative to the working directory)."""
    return f"sqlite+aiosqlite:///{Path('var') / f'{service}.db'}"


def local_url(service: str) -> str:
    return f"http://127.0.0.1:{DEFAULT_PORTS[service]}"


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``service_name`` and the prefix."""

    service_name: ClassVar[str] = "service"

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL of this service's own database "
        "(default: a SQLite file under var/).",
    )
    host: str = Field(default="127.0.0.1", description="Interface `serve` binds to.")
    port: int = Field(default=0, description="Port `serve` binds to (default: the service's).")
    public_url: str = Field(default="", description="Base URL other parties use to reach this service.")

    access_url: str = Field(default=local_url("access"), description="Base URL of the access service.")
    audit_url: str = Field(default=local_url("audit"), description="Base URL of the audit service.")
    catalog_url: str = Field(default=local_url("catalog"), description="Base URL of the catalog service.")
    orders_url: str = Field(default=local_url("orders"), description="Base URL of the orders service.")

    token_issuer: str = Field(
        default="",
        description="Expected `iss` of platform tokens (default: the access service URL).",
    )
    token_audience: str = Field(
        default=PLATFORM_AUDIENCE, description="Expected `aud` of platform API tokens."
    )
    jwks_url: str = Field(
        default="", description="Where to fetch the verification keys (default: access JWKS)."
    )
    jwks_cache_seconds: float = Field(default=300.0, description="How long fetched keys are trusted.")
    jwks_min_refetch_seconds: float = Field(
        default=10.0,
        description="Least time between two JWKS fetches triggered by an unknown `kid`.",
    )

    service_client_id: str = Field(
        default="",
        description="This service's own API client (role `service`) for calls to other "
        "services, e.g. delivering audit events (default: svc-<service>).",
    )
    service_client_secret: SecretStr | None = Field(
        default=None,
        description="Its secret. Without it the outbox keeps messages until one is configured.",
    )
    outbox_poll_seconds: float = Field(default=0.5, description="Idle wait of the outbox relay.")
    outbox_batch_size: int = Field(default=100, ge=1, le=1000,
                                   description="Messages an outbox relay claims and sends at once.")
    outbox_max_backoff_seconds: float = Field(
        default=60.0, gt=0, description="Longest wait before an outbox message is tried again "
        "(failures back off exponentially from 0.5 s, with jitter, up to this).")

    trace_exporter: Literal["none", "console", "otlp", "memory"] = Field(
        default="none",
        description="Where OpenTelemetry spans go: `none` (tracing off: nothing is instrumented), "
        "`otlp` (OTLP over HTTP to `TRACE_OTLP_ENDPOINT`), `console` (printed, for debugging), "
        "`memory` (kept in the process, for tests). See operations.md#tracing.",
    )
    trace_otlp_endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces (default: the "
        "standard OTEL_EXPORTER_OTLP_* variables, else http://localhost:4318/v1/traces).",
    )
    trace_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="Share of new traces recorded (a trace started upstream follows the "
        "upstream decision).",
    )

    log_level: str = Field(default="INFO", description="Python log level.")
    log_json: bool = Field(default=True, description="Log one JSON object per line.")
    db_echo: bool = Field(default=False, description="Log every SQL statement.")
    db_pool_size: int = Field(
        default=10, ge=1, description="PostgreSQL connections kept open per process."
    )
    db_max_overflow: int = Field(
        default=20, ge=0, description="Extra PostgreSQL connections a process may open under load."
    )
    db_work_mem: str = Field(
        default="", pattern=r"^(|[1-9][0-9]*(kB|MB|GB))$", examples=["16MB"],
        description="PostgreSQL `work_mem` for this service's connections (each sort or hash of a "
        "statement may use up to that much); empty: the server's setting. SQLite ignores it.",
    )

    def model_post_init(self, __context: object) -> None:
        name = self.service_name
        if not self.database_url:
            self.database_url = default_sqlite_url(name)
        if not self.port:
            self.port = DEFAULT_PORTS.get(name, 8000)
        if not self.public_url:
            self.public_url = f"http://127.0.0.1:{self.port}"
        self.access_url = self.access_url.rstrip("/")
        if not self.token_issuer:
            self.token_issuer = self.access_url
        if not self.service_client_id:
            self.service_client_id = f"svc-{name}"
        if not self.jwks_url:
            self.jwks_url = f"{self.access_url}/.well-known/jwks.json"
