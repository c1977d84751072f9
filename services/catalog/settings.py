from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: ClassVar[str] = "catalog"
    model_config = SettingsConfigDict(env_prefix="SLUICE_CATALOG_", extra="ignore")

    public_view_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a published product's public JSON may be served from this process's "
        "memory (0 disables). Transitions in this process invalidate at once; other replicas "
        "follow within this time. Owners, regulators and the internal API always read the database.",
    )
    public_view_cache_entries: int = Field(default=20_000, ge=1, description="Products kept in that cache.")
    public_catalog_requests_per_minute: int = Field(
        default=120, ge=0,
        description="Requests a minute one client address may make to the public, unauthenticated "
        "DCAT-AP catalogue (`GET /v1/catalog.jsonld`), per process; 0 disables the limit.",
    )
    db_work_mem: str = Field(
        default="16MB", pattern=r"^(|[1-9][0-9]*(kB|MB|GB))$", examples=["16MB"],
        description="PostgreSQL `work_mem` for the catalog's connections (empty: the server's, "
        "4MB by default). A word search with category and grade filters intersects a common "
        "word's posting list with the filters' index; at 1M products that bitmap needs ~16MB to "
        "stay exact (at 4MB it degrades to whole pages and re-matches every row on them: "
        "docs/performance.md, catalog search, fourth pass).",
    )
    search_facet_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long facet counts and totals of a listed-product search may be reused "
        "(0 disables). Hits and pages are always fresh; only the counts may lag.",
    )
