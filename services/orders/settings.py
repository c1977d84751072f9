from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    service_name: ClassVar[str] = "orders"
    model_config = SettingsConfigDict(env_prefix="SLUICE_ORDERS_", extra="ignore")

    stripe_api_key: SecretStr = Field(
        default=SecretStr("sk_test_sluice"),
        description="Stripe secret key (the default suits localstripe; set a real key in production).",
    )
    stripe_api_base: str = Field(
        default="http://127.0.0.1:8420",
        description="Stripe API base URL (localstripe in dev and tests; https://api.stripe.com in prod).",
    )
    stripe_webhook_secret: SecretStr = Field(
        default=SecretStr("whsec_sluice_dev"),
        description="Signing secret of the Stripe webhook endpoint (`whsec_...`).",
    )
    stripe_webhook_tolerance_seconds: int = Field(
        default=300, ge=1, le=3600,
        description="A webhook's signed timestamp must lie within this many seconds of now, in the "
        "past or the future (replay protection).",
    )
    stripe_timeout_seconds: float = Field(default=20.0, description="Timeout of one Stripe API call.")
    platform_fee_bps: int = Field(
        default=1000, ge=0, le=10_000,
        description="Platform fee in basis points of the gross price (1000 = 10%).",
    )
    quote_ttl_seconds: int = Field(default=900, ge=1, description="How long a quote can be ordered.")
    vat_bps: int = Field(
        default=0, ge=0, le=10_000,
        description="VAT added to every price, in basis points (2000 = 20%); also a Stripe TaxRate on "
        "subscription invoices. 0 adds none.",
    )
    vat_jurisdiction: str = Field(default="EU", max_length=32,
                                  description="Jurisdiction named on the VAT tax rate.")
    grace_days: int = Field(
        default=7, ge=0, le=60,
        description="How long a subscription's access continues after a renewal payment fails; then "
        "the entitlement is held for non-payment until the buyer pays.",
    )
    reconcile_after_seconds: float = Field(
        default=300.0,
        description="An order still pending payment this long after its last payment attempt is "
        "checked against Stripe (webhooks can be lost).",
    )
    reconcile_interval_seconds: float = Field(
        default=60.0, description="How often the reconciler runs (0 disables the background task)."
    )
    catalog_cache_seconds: float = Field(
        default=2.0, ge=0, le=60,
        description="How long a product version read from the catalog for a quote or an order is "
        "reused. Versions never change but for the product's status and latest version, so a "
        "suspension or a new version stops new quotes and orders of the old one within this "
        "bound. 0 asks the catalog every time.",
    )
    fulfilment_poll_seconds: float = Field(
        default=0.5, description="Idle wait of the relay that delivers entitlement commands."
    )
    idempotency_wait_seconds: float = Field(
        default=10.0,
        description="How long a repeated order request waits for the first one to finish "
        "creating the payment before answering 409.",
    )
