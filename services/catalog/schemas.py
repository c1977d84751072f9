"""Request and response bodies of the catalog API.

Shapes are checked here (types, lengths, patterns); the marketplace rules that
relate fields to each other (grades, personal data, delivery, prices) live in
:mod:`services.catalog.rules` so every refusal can name its rule.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Grade = Literal["L1_public", "L2_internal", "L3_sensitive", "L4_restricted"]
PersonalData = Literal["none", "deidentified", "identifiable"]
DeliveryMode = Literal["rows", "aggregates"]
PlanKind = Literal["free", "one_time", "subscription", "metered"]
Status = Literal["draft", "in_review", "listed", "suspended", "retired"]
FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime"]

# Money is integer minor units. Floats are accepted by the parser only so the
# rule `price-integer-minor-units` can refuse them with a clear explanation.
Money = int | float

_SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"


class Attestation(BaseModel):
    """Who attests that the data is de-identified, how, and to which k."""

    method: str = Field(min_length=2, max_length=200, examples=["k-anonymity via generalisation"])
    k: int = Field(ge=2, le=1_000_000, description="k-anonymity level reached.", examples=[10])
    date: dt.date = Field(examples=["2026-10-01"])
    attested_by: str = Field(min_length=2, max_length=200, examples=["Dr. A. Example, DPO"])


class Rights(BaseModel):
    """The three separated rights, plus provenance and licence."""

    resource_holder: str = Field(min_length=1, max_length=200, examples=["City of Example"])
    processing_right_holder: str = Field(min_length=1, max_length=200, examples=["Example Mobility Lab"])
    operating_right_holder: str = Field(min_length=1, max_length=200, examples=["Example Data GmbH"])
    provenance: str = Field(min_length=1, max_length=2000, examples=["Ticket gates, 2024, daily export"])
    licence: str = Field(min_length=1, max_length=200, examples=["CC-BY-4.0"])


class SchemaField(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", examples=["district"])
    type: FieldType = Field(examples=["string"])
    description: str = Field(default="", max_length=1000)
    personal: bool = Field(default=False, description="The column holds personal data.")
    masked: bool = Field(default=False, description="The data service masks this column.")


class DataSchema(BaseModel):
    fields: list[SchemaField] = Field(min_length=1, max_length=500)


class DeliveryIn(BaseModel):
    data_service_url: str = Field(
        max_length=500,
        description="Absolute http(s) URL of the provider's data service; the audience of "
        "data-access tokens.",
        examples=["https://data.example.org"],
    )
    mode: DeliveryMode = Field(examples=["aggregates"])
    max_rows: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Row cap per query (default 1000)."
    )
    min_group_size: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Smallest group returned (L3: at least the attestation's k, which is the default).",
    )
    epsilon_budget: float | None = Field(
        default=None, gt=0, le=100, description="Differential-privacy budget per entitlement (L3 only)."
    )


class Delivery(BaseModel):
    data_service_url: str
    mode: DeliveryMode


class UsagePolicy(BaseModel):
    allowed_purposes: list[str] = Field(min_length=1, max_length=50, examples=[["research"]])
    max_duration_days: int = Field(ge=1, le=3650, examples=[365])
    resale_allowed: bool = Field(default=False)
    territories: list[str] = Field(min_length=1, max_length=250, examples=[["EU"]])


class Tier(BaseModel):
    up_to: int | None = Field(description="Last query of the tier; null = no upper bound.")
    unit_price: Money = Field(description="Price per query in minor units.")


class PlanIn(BaseModel):
    """A pricing plan. Give `id` to keep an existing plan's id across versions."""

    id: str | None = Field(default=None, pattern=r"^plan_[0-9a-f]{8,32}$")
    name: str = Field(min_length=1, max_length=100, examples=["Monthly"])
    kind: PlanKind
    currency: str = Field(examples=["EUR"], description="ISO 4217 code.")
    price: Money = Field(default=0, description="Minor units: one-off price or price per period.")
    period: Literal["month", "year"] | None = None
    price_per_query: Money = 0
    included_queries: int = Field(default=0, ge=0)
    tiers: list[Tier] = Field(default_factory=list, max_length=20)
    query_quota: int | None = Field(default=None, ge=1, description="null = unlimited")
    access_days: int | None = Field(default=None, ge=1, le=3650)
    trial_days: int | None = Field(default=None, ge=1, le=90,
                                   description="A free trial of this many days, once per buyer "
                                   "organisation.")
    trial_queries: int | None = Field(default=None, ge=1, le=1_000_000,
                                      description="A free trial's query limit (alone: a query-limited "
                                      "trial).")
    epsilon: float | None = Field(
        default=None, gt=0, le=100,
        description="L3 only: the privacy loss (differential privacy ε) this plan sells: each "
        "entitlement may spend this much of the product's budget (per period for subscriptions). "
        "Default: delivery.epsilon_budget.", examples=[2.0])
    query_epsilon: float | None = Field(
        default=None, gt=0, le=10,
        description="L3 only: ε charged per query that names none (default: the data service's).",
        examples=[0.5])


class Plan(BaseModel):
    """The Plan of docs/contracts.md."""

    id: str = Field(examples=["plan_8d1f0c2a9b7e"])
    name: str
    kind: PlanKind
    currency: str
    price: int
    period: Literal["month", "year"] | None
    price_per_query: int
    included_queries: int
    tiers: list[dict[str, int | None]]
    query_quota: int | None
    access_days: int | None
    trial_days: int | None = None
    trial_queries: int | None = None
    epsilon: float | None = Field(default=None, description="L3: ε each entitlement may spend.")
    query_epsilon: float | None = Field(default=None, description="L3: default ε per query.")


class ProductSpec(BaseModel):
    """Everything a provider declares about a product (create and replace the draft)."""

    model_config = ConfigDict(populate_by_name=True)

    slug: str = Field(pattern=_SLUG, examples=["mobility-2024"])
    title: str = Field(min_length=3, max_length=200, examples=["Commuter flows 2024"])
    summary: str = Field(default="", max_length=500)
    description: str = Field(default="", max_length=50_000, description="Markdown.")
    category: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", examples=["mobility"])
    tags: list[str] = Field(default_factory=list, max_length=20, examples=[["transport", "commuting"]])
    grade: Grade
    personal_data: PersonalData
    deidentification: Attestation | None = None
    rights: Rights
    data_schema: DataSchema = Field(alias="schema")
    sample: list[dict[str, Any]] | None = Field(
        default=None, max_length=20, description="Up to 20 example rows matching the schema (none for L3)."
    )
    delivery: DeliveryIn
    usage_policy: UsagePolicy
    derived_from: list[str] = Field(default_factory=list, max_length=50)
    plans: list[PlanIn] = Field(default_factory=list, max_length=20)


class PrivacyBudgetReport(BaseModel):
    """A data service's report of a product's privacy budget (it is the source of truth)."""

    period: str = Field(max_length=16, examples=["2026-11"])
    renews_at: dt.datetime
    epsilon_total: float = Field(ge=0, le=1_000_000)
    epsilon_spent: float = Field(ge=0, le=1_000_000)
    delta_total: float = Field(default=0.0, ge=0, le=1)
    delta_spent: float = Field(default=0.0, ge=0, le=1)
    answers: int = Field(default=0, ge=0)
    as_of: dt.datetime = Field(description="When the data service read these figures.")


class PrivacyBudget(BaseModel):
    """The product's privacy budget as its data service last reported it (a copy: the data
    service's own ledger is the source of truth)."""

    period: str
    renews_at: dt.datetime
    epsilon_total: float
    epsilon_spent: float
    epsilon_remaining: float
    delta_total: float
    delta_spent: float
    as_of: dt.datetime = Field(description="How current this copy is.")
    source: Literal["data service report"] = "data service report"


class Guardrails(BaseModel):
    max_rows: int
    min_group_size: int
    epsilon_budget: float | None


class ProductState(BaseModel):
    """The product-level members of a ProductView: they change with the product's lifecycle."""

    id: str = Field(examples=["prd_5e0b1c9a2f3d4e6a"])
    provider_org: str
    status: Status
    latest_version: int = Field(description="Newest published version; 0 before the first.")
    pending_draft: Literal["draft", "in_review"] | None = Field(
        description="State of an unpublished working copy, if any (owner and regulators only)."
    )
    status_reason: str | None = None
    privacy_budget: PrivacyBudget | None = Field(
        default=None, description="L3: the product-wide privacy budget of the current release "
        "period, shared by every buyer, as its data service reported it (null before the first "
        "report).")
    created_at: dt.datetime
    updated_at: dt.datetime
    listed_at: dt.datetime | None


class VersionBody(BaseModel):
    """The version-level members of a ProductView. A published version's never change, so
    its public JSON is rendered once, at publication (``product_versions.public_doc``)."""

    model_config = ConfigDict(populate_by_name=True)

    version: int = Field(description="The version shown (the draft's future number for drafts).")
    version_state: Literal["published", "draft", "in_review"]
    slug: str
    title: str
    summary: str
    description: str
    category: str
    tags: list[str]
    grade: Grade
    personal_data: PersonalData
    deidentification: Attestation | None
    rights: Rights
    data_schema: DataSchema = Field(alias="schema")
    sample: list[dict[str, Any]] | None
    delivery: Delivery
    guardrails: Guardrails
    usage_policy: UsagePolicy
    derived_from: list[str]
    plans: list[Plan]
    published_at: dt.datetime | None = None


class ProductView(VersionBody, ProductState):
    """A product as one of its versions (or its draft) describes it: the product's state
    members first, then the version's (the order in which a stored public document is
    spliced after the state; see services/catalog/views.py)."""

    model_config = ConfigDict(populate_by_name=True)


class VersionSummary(BaseModel):
    version: int
    grade: Grade
    published_at: dt.datetime
    published_by: str
    approved_by: str | None
    approval_note: str | None


class Reason(BaseModel):
    reason: str = Field(min_length=3, max_length=2000, examples=["Attestation date is missing."])


class OptionalReason(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


class Note(BaseModel):
    note: str = Field(min_length=3, max_length=2000, examples=["Attestation checked; k=10 verified."])


class ReviewItem(BaseModel):
    product_id: str
    provider_org: str
    title: str
    grade: Grade
    version: int
    submitted_at: dt.datetime


class SearchHit(BaseModel):
    id: str
    provider_org: str
    slug: str
    title: str
    summary: str
    category: str
    tags: list[str]
    grade: Grade
    status: Status
    latest_version: int
    currency: str | None
    min_price: int | None = Field(description="Lowest plan price in minor units of `currency`.")
    plan_kinds: list[PlanKind]
    listed_at: dt.datetime | None


class Facets(BaseModel):
    category: dict[str, int]
    grade: dict[str, int]
    plan_kind: dict[str, int]


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None
    total: int = Field(description="How many products match the filters (-1 with facets=false).")
    facets: Facets


class InternalVersion(BaseModel):
    """Pinned version for orders and access (docs/contracts.md)."""

    product_id: str
    version: int
    status: Status
    provider_org: str
    slug: str
    title: str
    grade: Grade
    personal_data: PersonalData
    delivery: Delivery
    usage_policy: UsagePolicy
    guardrails: Guardrails
    plans: list[Plan]
    latest_version: int = Field(description="The product's newest published version (orders quotes "
                                "only that one).")


class InternalProduct(BaseModel):
    product_id: str
    status: Status
    provider_org: str
    latest_version: int
