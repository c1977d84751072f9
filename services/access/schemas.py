"""Request and response bodies of the access service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrgRole = Literal["provider", "buyer", "regulator", "operator"]
ClientRole = Literal["provider", "buyer", "regulator", "operator", "service"]
Status = Literal["active", "suspended"]


class OrganisationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["Northwind Mobility Data"])
    roles: list[OrgRole] = Field(min_length=1, examples=[["provider"]])


class Organisation(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str = Field(examples=["org_4f1c2a9d0b7e6c5a3f21"])
    name: str
    roles: list[str]
    status: Status
    status_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, examples=["Licence withdrawn by regulator"])


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["ingest-bot"])
    roles: list[ClientRole] | None = Field(
        default=None,
        description="Roles for this client; must be held by the organisation. Default: all of them.",
        examples=[["provider"]],
    )


class Client(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    client_id: str = Field(examples=["cli_2b9e41c07d5a88f3e6a1"])
    organisation_id: str
    name: str
    roles: list[str]
    status: Status
    status_reason: str | None = None
    created_at: datetime
    secret_rotated_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="Until then the secret the last rotation replaced still works "
        "(the overlap the client chose); null when only the current secret does.")


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"old_secret_expires_in": 86400}]})
    old_secret_expires_in: int = Field(
        default=3600, ge=0, le=7 * 86400,
        description="Seconds the current secret keeps working beside the new one (0: it stops now; "
        "at most 7 days). Deploy the new secret within this window; a secret older than the "
        "current one stops at once.")


class ClientWithSecret(Client):
    client_secret: str = Field(
        description="Shown once: store it now. Only a hash is kept.",
        examples=["sls_Qm9vb3ZhbHVlLW9ubHktb25jZS1zaG93bg"],
    )


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - not a secret
    expires_in: int = Field(examples=[900])
    scope: str = Field(examples=["provider"])


class OAuthError(BaseModel):
    error: str = Field(examples=["invalid_client"])
    error_description: str | None = None


class SigningKeyInfo(BaseModel):
    kid: str
    status: str
    retire_after: datetime | None
