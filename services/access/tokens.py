"""Platform API tokens (OAuth 2.0 client credentials), signed RS256 with ``kid``."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jose import jwt

from services.access.identity import Authenticated
from services.access.keys import KeyStore
from shared.auth import ALGORITHM, PLATFORM_TOKEN_TYP
from shared.db import utcnow


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    roles: list[str]
    jti: str


def sign(keys: KeyStore, claims: dict[str, Any], typ: str = PLATFORM_TOKEN_TYP) -> str:
    key = keys.active
    token: str = jwt.encode(claims, key.signing, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ})
    return token


def issue_platform_token(
    keys: KeyStore,
    who: Authenticated,
    *,
    issuer: str,
    audience: str,
    lifetime: int,
    requested: Sequence[str] | None = None,
) -> IssuedToken:
    """Roles are the client's roles (narrowed to ``requested`` when given)."""
    roles = sorted(set(who.client.roles) & set(requested)) if requested else sorted(who.client.roles)
    now = int(utcnow().timestamp())
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": issuer,
        "sub": who.client.client_id,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": jti,
        "client_id": who.client.client_id,
        "org": who.organisation.id,
        "roles": roles,
        "scope": " ".join(roles),
    }
    return IssuedToken(sign(keys, claims), lifetime, roles, jti)


class LocalServiceToken:
    """A platform token for the access service's own client (``svc-access``,
    role ``service``), signed locally: the access service holds the keys, so it
    never calls its own /oauth/token. Use it for calls to other services
    (audit relay, catalog internal API)."""

    def __init__(self, keys: KeyStore, *, client_id: str, issuer: str, audience: str,
                 lifetime: int = 300) -> None:
        self.keys = keys
        self.client_id = client_id
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self._token: str | None = None
        self._renew_at = 0

    async def __call__(self) -> str:
        now = int(utcnow().timestamp())
        if self._token is None or now >= self._renew_at:
            claims = {
                "iss": self.issuer, "sub": self.client_id, "aud": self.audience,
                "iat": now, "nbf": now, "exp": now + self.lifetime,
                "jti": secrets.token_urlsafe(16), "client_id": self.client_id,
                "org": None, "roles": ["service"], "scope": "service",
            }
            self._token = sign(self.keys, claims)
            self._renew_at = now + self.lifetime // 2
        return self._token
