"""Request and response bodies for entitlements, data-access tokens,
revocation and usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.access.models import Entitlement as EntitlementRow
from services.access.models import RevocationEntry, UsageRecord

EntitlementStatus = Literal["active", "suspended", "revoked", "expired"]

_ID = r"^[A-Za-z0-9_.:-]+$"


class EntitlementCreate(BaseModel):
    """What orders sends when an order is paid (docs/contracts.md)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "order_id": "ord_7f3a9c", "buyer_org": "org_4f1c2a9d0b7e6c5a3f21",
        "product_id": "prd_91be", "version": 1, "plan_id": "plan_monthly",
        "purpose": "research", "valid_from": "2026-11-28T00:00:00Z",
        "valid_until": "2026-12-28T00:00:00Z",
    }]})
    order_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    buyer_org: str = Field(min_length=1, max_length=40, pattern=_ID)
    product_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    version: int = Field(ge=1)
    plan_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    purpose: str = Field(min_length=1, max_length=64)
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    query_quota: int | None = Field(
        default=None, ge=0,
        description="Optional: the order's total query quota (a metered bundle, or a periodic "
        "plan's quota times the periods bought). Without it access derives it from the plan.",
    )
    epsilon_budget: float | None = Field(
        default=None, gt=0, le=10_000,
        description="Optional (L3): the privacy budget ε the order bought (the plan's epsilon, "
        "times the periods for subscriptions). Without it: the plan's, else the product's.",
    )

    @model_validator(mode="after")
    def _window(self) -> EntitlementCreate:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


_BATCH_EXAMPLE = {
    "idempotency_key": "grant:ord_7f3a9c",
    "body": EntitlementCreate.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
}


class GrantBatchItem(BaseModel):
    """One grant of a batch: the body ``POST /v1/entitlements`` takes, and the caller's key
    for it (the orders relay sends its outbox message id), echoed in the result. Access
    deduplicates on the body's ``order_id``, as the single grant does."""

    model_config = ConfigDict(extra="forbid")
    idempotency_key: str = Field(min_length=1, max_length=200, examples=["grant:ord_7f3a9c"])
    body: dict[str, Any] = Field(
        description="An `EntitlementCreate` (the body of `POST /v1/entitlements`). Validated per "
        "item: an invalid one is answered with its own 422 problem, the others are granted.")


class GrantBatch(BaseModel):
    """Up to 100 grants in one request (docs/contracts.md)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"items": [_BATCH_EXAMPLE]}]})
    items: list[GrantBatchItem] = Field(min_length=1, max_length=100)


class GrantBatchResult(BaseModel):
    idempotency_key: str
    status: int = Field(description="What `POST /v1/entitlements` would have answered: 201 "
                        "granted, 200 already granted, 409/422/503 a problem.", examples=[201])
    body: dict[str, Any] = Field(description="The entitlement (2xx) or the RFC 9457 problem.")


class GrantBatchResults(BaseModel):
    results: list[GrantBatchResult] = Field(description="One per item, in the items' order.")


class Limits(BaseModel):
    max_rows: int | None = Field(examples=[1000])
    min_group_size: int | None = Field(examples=[10])
    epsilon_budget: float | None = Field(examples=[1.0])
    query_quota: int | None = Field(examples=[10000], description="null = unlimited")


class UsageCounters(BaseModel):
    queries_used: int = Field(examples=[42])
    queries_remaining: int | None = Field(description="null = unlimited", examples=[9958])
    epsilon_used: float = Field(examples=[0.3])
    epsilon_remaining: float | None = Field(examples=[0.7])


class Entitlement(BaseModel):
    id: str = Field(examples=["ent_0c5d2e7f9a1b3c4d5e6f7a8b"])
    order_id: str
    status: EntitlementStatus = Field(
        description="`expired` is computed from `valid_until`; `suspended` covers suspensions of "
        "the entitlement itself, its product (catalog) or either organisation (see `suspended_by`)."
    )
    status_reason: str | None = None
    suspended_by: list[Literal["entitlement", "product", "organisation", "billing"]] = Field(
        default_factory=list)
    buyer_org: str
    provider_org: str
    product_id: str
    version: int
    plan_id: str
    plan_kind: str = Field(examples=["subscription"])
    purpose: str = Field(examples=["research"])
    audience: str = Field(description="The data service the tokens are for (`aud`).",
                          examples=["http://127.0.0.1:8010"])
    grade: str = Field(examples=["L3_sensitive"])
    valid_from: datetime
    valid_until: datetime
    limits: Limits
    usage: UsageCounters
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, row: EntitlementRow, status: str, suspended_by: list[str]) -> Entitlement:
        quota, budget = row.query_quota, row.epsilon_budget
        return cls.model_validate({
            "id": row.id, "order_id": row.order_id, "status": status,
            "status_reason": row.status_reason, "suspended_by": suspended_by,
            "buyer_org": row.buyer_org, "provider_org": row.provider_org,
            "product_id": row.product_id, "version": row.version, "plan_id": row.plan_id,
            "plan_kind": row.plan_kind, "purpose": row.purpose, "audience": row.audience,
            "grade": row.grade, "valid_from": row.valid_from, "valid_until": row.valid_until,
            "limits": {"max_rows": row.max_rows, "min_group_size": row.min_group_size,
                       "epsilon_budget": budget, "query_quota": quota},
            "usage": {
                "queries_used": row.queries_used,
                "queries_remaining": None if quota is None else max(0, quota - row.queries_used),
                "epsilon_used": row.epsilon_used,
                "epsilon_remaining": None if budget is None else max(0.0, budget - row.epsilon_used),
            },
            "created_at": row.created_at, "revoked_at": row.revoked_at,
        })


class EntitlementChangeIn(BaseModel):
    """A billing change from orders (a renewal, a grace period, a hold for non-payment, a
    refund that shortens access). Idempotent by ``change_id``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "change_id": "renew:ord_9a8b7c", "reason": "subscription renewed",
        "valid_from": "2026-12-28T00:00:00Z", "valid_until": "2027-01-28T00:00:00Z",
        "query_allowance": 10000, "billing_hold": False,
    }]})
    change_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    reason: str = Field(min_length=1, max_length=500)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    query_allowance: int | None = Field(
        default=None, ge=0, description="Queries allowed from now on: the quota becomes the "
        "queries used so far plus this (a new billing period's allowance).")
    unlimited_queries: bool | None = Field(default=None, description="true removes the query quota "
                                           "(a spending cap lifted on a plan without one).")
    epsilon_allowance: float | None = Field(default=None, ge=0, le=1000, allow_inf_nan=False,
                                            description="L3: privacy budget (ε) allowed from now on: the "
                                            "budget becomes the ε spent so far plus this.")
    plan_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_ID,
                                description="Another plan of the same pinned version (upgrade).")
    billing_hold: bool | None = Field(default=None, description="true suspends for non-payment, "
                                      "false lifts that suspension.")
    spend_cap: dict[str, int | str] | None = Field(
        default=None, description="The buyer's spending cap per period, for refusal messages.")


class UsageSummary(BaseModel):
    entitlement_id: str
    after_seq: int = Field(description="Records counted are those after this sequence number.")
    queries: int = Field(description="Queries recorded after `after_seq`.")
    last_seq: int = Field(description="The last record counted (pass it as `after_seq` next time).")
    epsilon: float


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, examples=["refund"])


class ProductSuspensionResult(BaseModel):
    product_id: str
    suspended: bool
    changed: list[str] = Field(description="Entitlements whose state changed.")


class DataTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_in: int | None = Field(
        default=None, ge=30, le=900,
        description="Wanted lifetime in seconds (default and maximum 900; never past the "
        "entitlement's end).",
    )


class DataTokenResponse(BaseModel):
    access_token: str = Field(description="RFC 9068 JWT (`typ: at+jwt`) for the data service.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - not a secret
    expires_in: int = Field(examples=[900])
    expires_at: datetime
    scope: Literal["query"] = "query"
    audience: str = Field(description="Send the token only to this data service.",
                          examples=["http://127.0.0.1:8010"])
    entitlement_id: str
    jti: str


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2: `active` and, when active, the token's claims."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"active": False},
        {"active": True, "scope": "query", "client_id": "cli_2b9e", "sub": "cli_2b9e",
         "aud": "http://127.0.0.1:8010", "ent": "ent_0c5d", "exp": 1795000000},
    ]})
    active: bool


class RevocationItem(BaseModel):
    kind: Literal["token", "entitlement"]
    id: str = Field(description="The token's `jti` or the entitlement id.")
    event: Literal["revoked", "suspended", "reinstated"] = Field(
        description="`reinstated` lifts an earlier `suspended` for the same entitlement; the "
        "latest entry for an id wins. Revocations are final."
    )
    revoked_at: datetime = Field(description="When this entry was recorded.")
    reason: str
    entitlement_id: str | None = None
    expires_at: datetime | None = Field(
        default=None, description="For tokens: when it expires anyway (forget it after this)."
    )

    @classmethod
    def of(cls, row: RevocationEntry) -> RevocationItem:
        return cls.model_validate({
            "kind": row.kind, "id": row.subject_id, "event": row.event,
            "revoked_at": row.revoked_at, "reason": row.reason,
            "entitlement_id": row.entitlement_id, "expires_at": row.expires_at,
        })


class RevocationFeed(BaseModel):
    items: list[RevocationItem]
    next_cursor: str = Field(
        description="Pass as `since` on the next poll; unchanged when nothing new arrived.",
        examples=["42"],
    )
    has_more: bool = Field(description="More entries are waiting: poll again at once.")


class UsageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "usage_id": "5b0f7c5e-8d1f-4c1e-9a53-0f0a6c1e2d3b", "entitlement_id": "ent_0c5d",
        "jti": "dGhlLWp0aQ", "product_id": "prd_91be", "rows_returned": 12,
        "suppressed_groups": 1, "epsilon_spent": 0.1, "occurred_at": "2026-11-28T10:00:00Z",
    }]})
    usage_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    entitlement_id: str = Field(min_length=1, max_length=40)
    jti: str = Field(min_length=1, max_length=64)
    product_id: str = Field(min_length=1, max_length=64)
    rows_returned: int = Field(ge=0)
    suppressed_groups: int = Field(default=0, ge=0)
    epsilon_spent: float = Field(default=0.0, ge=0, le=1000, allow_inf_nan=False)
    occurred_at: AwareDatetime


class Usage(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    usage_id: str
    entitlement_id: str
    jti: str
    product_id: str
    version: int
    plan_id: str
    plan_kind: str
    buyer_org: str
    provider_org: str
    query_number: int = Field(description="This is the entitlement's n-th recorded query "
                              "(what metered tiers count).")
    rows_returned: int
    suppressed_groups: int
    epsilon_spent: float
    occurred_at: datetime
    recorded_at: datetime

    @classmethod
    def of(cls, row: UsageRecord) -> Usage:
        return cls.model_validate(row)

