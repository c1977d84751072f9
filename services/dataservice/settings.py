from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

#: The demo mapping shipped with the package (two products over the generated demo data).
DEMO_PRODUCTS_FILE = Path(__file__).parent / "demo" / "products.yaml"
DEMO_DATA_URL = f"sqlite+aiosqlite:///{Path('var') / 'dataservice-demo.db'}"


class DataServiceSettings(ServiceSettings):
    service_name: ClassVar[str] = "dataservice"
    model_config = SettingsConfigDict(env_prefix="SLUICE_DATASERVICE_", extra="ignore")

    data_url: str = Field(
        default=DEMO_DATA_URL,
        description="SQLAlchemy URL of the provider's own data (read only; `postgresql://` and "
        "`sqlite://` are upgraded to their async drivers). Default: the generated demo data set.",
    )
    products_file: str = Field(
        default=str(DEMO_PRODUCTS_FILE),
        description="YAML or JSON mapping of product id → table/view, exposed, masked and "
        "personal-identifier columns, grade (default: the shipped demo mapping).",
    )
    product_aliases_file: str = Field(
        default="",
        description="YAML file binding catalog product ids to mapped products "
        "(`aliases: {prd_...: <mapped id>}`), re-read when it changes; empty = none.",
    )
    demo_transit_product_id: str = Field(
        default="prd_demo_transit",
        description="Product id the demo mapping gives the L1 transit statistics.",
    )
    demo_health_product_id: str = Field(
        default="prd_demo_health",
        description="Product id the demo mapping gives the L3 health-service records.",
    )
    demo_people: int = Field(default=3000, ge=100, description="Synthetic people in the demo data.")
    demo_autoseed: bool = Field(
        default=True,
        description="Generate the demo data on start when data_url is the default demo database "
        "and it has no demo tables yet (never touches a provider's own database).",
    )
    revocation_poll_seconds: float = Field(
        default=15.0, gt=0, le=30,
        description="How often the revocation feed is polled (at most 30 s, so revoked tokens "
        "stop working within a minute).",
    )
    min_query_epsilon: float = Field(
        default=0.01, gt=0, le=10,
        description="Smallest epsilon one L3 query may spend (smaller ones are refused with rule "
        "`epsilon-minimum`: their answers would be almost only noise, and every charge is at "
        "least this).",
    )
    release_check_seconds: float = Field(
        default=60.0, ge=0,
        description="How often the current release period's contribution-bounded copy of each L3 "
        "product is made if missing (at start and after a period begins), so that no buyer's "
        "query waits for it; 0 = only when a query needs it.",
    )
    budget_report_seconds: float = Field(
        default=5.0, gt=0, le=3600,
        description="How often changed privacy budgets are reported to the catalog (through the "
        "outbox), so buyers see what remains.",
    )
    exact_cache_entries: int = Field(
        default=512, ge=0,
        description="Exact L3 aggregates kept in memory per process, per (release, query shape); "
        "each answer still draws fresh noise and exact values never leave the process. 0 = off.",
    )
    mask_value: str = Field(default="***", description="What a masked column's values read as.")
    query_timeout_seconds: float = Field(
        default=20.0, gt=0, description="Longest a query may run on the provider's database."
    )

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        # Data-access tokens name exactly one data service as audience (RFC 8707
        # resource): this one's public URL, unless configured otherwise.
        if "token_audience" not in self.model_fields_set:
            self.token_audience = self.public_url.rstrip("/")

    def product_renames(self) -> dict[str, str]:
        """The demo mapping's product ids as configured (empty for a provider's own mapping)."""
        if self.products_file != str(DEMO_PRODUCTS_FILE):
            return {}
        return {"prd_demo_transit": self.demo_transit_product_id,
                "prd_demo_health": self.demo_health_product_id}

    @property
    def uses_demo(self) -> bool:
        return self.data_url == DEMO_DATA_URL and Path(self.products_file) == DEMO_PRODUCTS_FILE
