"""Tables of the access service (identity part)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.access.account_status import AccountStatus, KeyStatus
from services.access.entitlement_status import EntitlementStatus
from shared.db import UTCDateTime, make_metadata, utcnow
from shared.outbox_model import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata()


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ApiClient(Base):
    __tablename__ = "api_clients"
    __table_args__ = (Index("ix_api_clients_org_created", "organisation_id", "created_at"),)

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret_rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The secret a self-service rotation replaced, valid until ``previous_secret_expires_at``
    #: (the overlap the client chose); at most one, so never more than two valid secrets.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    # active: signs new tokens; retiring: verifies until retire_after; retired: gone from JWKS
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retire_after: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


outbox = outbox_table(Base.metadata)


# --- entitlements, revocation and usage (issue 6) ------------------------------------

class Entitlement(Base):
    """The right of a buyer organisation to query one pinned product version.

    ``status`` is what people set (active, suspended, revoked); ``product_suspended``
    and ``org_suspended`` record suspensions that come from the catalog or from an
    organisation, so lifting one of them never lifts another. Expiry is computed.
    """

    __tablename__ = "entitlements"
    __table_args__ = (
        Index("ix_entitlements_buyer_created", "buyer_org", "created_at"),
        Index("ix_entitlements_provider_created", "provider_org", "created_at"),
        Index("ix_entitlements_product", "product_id"),
        # Few rows are true; the feed looks them up on every poll.
        Index("ix_entitlements_org_suspended", "org_suspended"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    buyer_org: Mapped[str] = mapped_column(String(40))
    provider_org: Mapped[str] = mapped_column(String(40))
    product_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_kind: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(500))
    grade: Mapped[str] = mapped_column(String(32))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=EntitlementStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    product_suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    org_suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Suspended for non-payment (a subscription past its grace period), set and lifted by
    #: orders only; like the flags above, lifting it lifts no other suspension.
    billing_suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: What the buyer agreed to pay at most per billing period (post-paid metered plans),
    #: so a refusal at the quota can say that the spending cap is what stops it.
    spend_cap: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    query_quota: Mapped[int | None] = mapped_column(Integer, default=None)
    queries_used: Mapped[int] = mapped_column(Integer, default=0)
    epsilon_budget: Mapped[float | None] = mapped_column(Float, default=None)
    epsilon_used: Mapped[float] = mapped_column(Float, default=0.0)
    max_rows: Mapped[int | None] = mapped_column(Integer, default=None)
    min_group_size: Mapped[int | None] = mapped_column(Integer, default=None)
    usage_policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RevocationEntry(Base):
    """One line of the revocation feed; ``id`` is the feed cursor (monotonic)."""

    __tablename__ = "revocations"
    __table_args__ = (Index("ix_revocations_subject", "subject_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # token | entitlement
    subject_id: Mapped[str] = mapped_column(String(64))  # jti or entitlement id
    event: Mapped[str] = mapped_column(String(16))  # revoked | suspended | reinstated
    reason: Mapped[str] = mapped_column(Text)
    entitlement_id: Mapped[str | None] = mapped_column(String(40), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageRecord(Base):
    """One query reported by a data service, with what metered billing needs."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_entitlement", "entitlement_id", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    usage_id: Mapped[str] = mapped_column(String(64), unique=True)
    entitlement_id: Mapped[str] = mapped_column(String(40))
    jti: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_kind: Mapped[str] = mapped_column(String(16))
    buyer_org: Mapped[str] = mapped_column(String(40))
    provider_org: Mapped[str] = mapped_column(String(40))
    query_number: Mapped[int] = mapped_column(Integer)
    rows_returned: Mapped[int] = mapped_column(Integer)
    suppressed_groups: Mapped[int] = mapped_column(Integer, default=0)
    epsilon_spent: Mapped[float] = mapped_column(Float, default=0.0)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reported_by: Mapped[str] = mapped_column(String(64))


class EntitlementChange(Base):
    """A billing change orders applied to an entitlement (renewal, grace, hold, refund),
    stored once by its id: a repeated delivery returns the stored result and changes
    nothing (``query_allowance`` is relative to the queries used when first applied)."""

    __tablename__ = "entitlement_changes"

    change_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entitlement_id: Mapped[str] = mapped_column(String(40), index=True)
    reason: Mapped[str] = mapped_column(Text)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

