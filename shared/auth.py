"""Token verification (offline, from a cached JWKS) and role dependencies.

Every service verifies platform tokens itself: RS256 only, ``kid`` required,
explicit issuer and audience, expiry required, ``iat`` not beyond the leeway in the future,
no critical header extension (``crit``) since none is understood. Unknown ``kid`` values trigger a
JWKS refetch, throttled so a flood of forged tokens cannot hammer the access
service.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from shared.errors import Forbidden, ServiceUnavailable, Unauthorized

logger = logging.getLogger("sluice.auth")

ALGORITHM = "RS256"
#: ``typ`` of platform tokens; data-access tokens are ``at+jwt`` (RFC 9068). Each kind is
#: refused where the other is expected (RFC 8725 §3.11 explicit typing), whatever its audience.
PLATFORM_TOKEN_TYP = "JWT"  # noqa: S105 - a JWT type, not a secret
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (seconds).
TOKEN_LEEWAY_SECONDS = 30
ROLES = ("provider", "buyer", "regulator", "operator", "service")


class InvalidToken(Unauthorized):
    problem = "invalid-token"
    title = "Invalid token"

    def __init__(self, detail: str) -> None:
        desc = detail.replace('"', "'")
        super().__init__(
            detail,
            headers={
                "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{desc}"'
            },
        )


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the verified token says."""

    subject: str
    client_id: str
    org_id: str | None
    roles: frozenset[str]
    token_id: str | None
    claims: dict[str, Any] = field(repr=False)

    def has_any(self, roles: Iterable[str]) -> bool:
        return bool(self.roles.intersection(roles))


class KeySource(Protocol):
    async def get(self, kid: str) -> Key | None: ...


def build_public_key(jwk_dict: dict[str, Any]) -> Key:
    """Build a verification key once (never per token)."""
    return jwk.construct(jwk_dict, ALGORITHM)


class JWKSKeySource:
    """Keys from a JWKS URL, cached for ``cache_seconds`` or the response's
    ``Cache-Control: max-age`` if shorter (the access service shortens it while a
    retiring key nears its end, so a retired key stops verifying in time); an
    unknown ``kid`` refetches at most once per ``min_refetch_seconds``. A key the
    access service no longer publishes is dropped at the next successful fetch;
    only while fetching fails are the last known keys kept."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        cache_seconds: float = 300.0,
        min_refetch_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.client = client
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._keys: dict[str, Key] = {}
        self._fetched_at = float("-inf")
        self._fresh_for = cache_seconds
        #: The last fetch failed (the access service is unreachable or broken).
        self.fetch_failed = False
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> Key | None:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self._fresh_for:
            return key
        if now - self._fetched_at >= self.min_refetch_seconds:
            await self._refresh()
            return self._keys.get(kid)
        return key  # stale, but refetching again so soon is throttled

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.min_refetch_seconds:
                return  # another task refreshed while we waited for the lock
            try:
                resp = await self.client.get(self.url)
                resp.raise_for_status()
                keys: dict[str, Key] = {}
                for entry in resp.json().get("keys", []):
                    if entry.get("kty") != "RSA" or "kid" not in entry:
                        continue
                    if entry.get("alg", ALGORITHM) != ALGORITHM:
                        continue
                    keys[entry["kid"]] = build_public_key(entry)
                self._keys = keys
                self._fresh_for = min(self.cache_seconds, max_age(resp.headers.get("cache-control")))
                self.fetch_failed = False
            except (httpx.HTTPError, ValueError, JWTError) as exc:
                self.fetch_failed = True
                # Keep the old keys: the access service being down must not
                # lock everybody out of tokens that are still valid.
                logger.warning("could not fetch JWKS from %s: %s; retrying later", self.url, exc)
            finally:
                self._fetched_at = time.monotonic()


def max_age(cache_control: str | None) -> float:
    """``max-age`` of a Cache-Control header in seconds (infinity when absent or unreadable)."""
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return float("inf")


class StaticKeySource:
    """Keys given up front (the access service itself, and tests)."""

    def __init__(self, keys: dict[str, Key] | Callable[[], dict[str, Key]]) -> None:
        self._keys = keys

    async def get(self, kid: str) -> Key | None:
        keys = self._keys() if callable(self._keys) else self._keys
        return keys.get(kid)


#: Critical header extensions (RFC 7515 §4.1.11) this verifier understands: none. A token
#: naming any in ``crit`` is refused, as the RFC requires of a recipient that does not.
UNDERSTOOD_CRIT: frozenset[str] = frozenset()


def crit_problem(header: dict[str, Any]) -> str | None:
    """Why a JOSE header's ``crit`` makes the token unacceptable, or ``None``."""
    if "crit" not in header:
        return None
    crit = header["crit"]
    if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
        return "The token header's crit member must be a non-empty list of names (RFC 7515 §4.1.11)."
    unknown = sorted(set(crit) - UNDERSTOOD_CRIT)
    if unknown:
        return (f"The token header marks extensions {unknown} as critical; they are not "
                "understood here, so the token is refused (RFC 7515 §4.1.11).")
    return None


def iat_problem(claims: dict[str, Any], leeway: int, *, now: float | None = None) -> str | None:
    """Why a token's ``iat`` is unbelievable (in the future beyond ``leeway``), or ``None``.
    python-jose only checks that ``iat`` is a number."""
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return "The token's iat claim must be a number of seconds."
    if iat > (time.time() if now is None else now) + leeway:
        return (f"The token claims to be issued in the future (iat {int(iat)}), beyond the "
                f"{leeway} s clock leeway; get a new token.")
    return None


@dataclass(frozen=True)
class _Verified:
    kid: str
    key: Key
    claims: dict[str, Any]
    expires: float


class VerifiedTokenCache:
    """Tokens whose signature and claims verified, until they expire (bounded LRU).

    Verifying an RS256 token costs more than serving most reads, and a client sends the same
    token with every request of its (15-minute) life. A verified token's signature and claims
    cannot change, so only three things are checked again on a hit: ``exp`` (against the
    clock), the key (the key source must still give the *same* key object for the ``kid``: a
    retired or re-fetched key sends the token through full verification again), and the
    verifier's ``extra_check``, which runs on every use because what it checks (a revocation
    list) changes while the token lives. Failures are never remembered. Keys are SHA-256
    digests of the tokens, not the tokens.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    async def get(self, token: str, keys: KeySource) -> dict[str, Any] | None:
        digest = self._digest(token)
        known = self._entries.get(digest)
        if known is None:
            return None
        if known.expires <= time.time() or await keys.get(known.kid) is not known.key:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return known.claims

    def put(self, token: str, kid: str, key: Key, claims: dict[str, Any]) -> None:
        digest = self._digest(token)
        self._entries[digest] = _Verified(kid, key, claims, float(claims["exp"]))
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class TokenVerifier:
    """Verifies a bearer token against one issuer and one audience (remembering tokens that
    verified, see :class:`VerifiedTokenCache`; ``cache_size=0`` turns that off)."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        required_typ: str | None = None,
        leeway: int = TOKEN_LEEWAY_SECONDS,
        extra_check: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        how_to_get_one: str = "Get one with the client credentials grant at the access "
        "service's POST /oauth/token.",
        cache_size: int = 10_000,
    ) -> None:
        self.how_to_get_one = how_to_get_one
        self.cache = VerifiedTokenCache(cache_size) if cache_size > 0 else None
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.required_typ = required_typ
        self.leeway = leeway
        self.extra_check = extra_check

    async def verify_claims(self, token: str) -> dict[str, Any]:
        if self.cache is not None and (known := await self.cache.get(token, self.keys)) is not None:
            if self.extra_check is not None:
                await self.extra_check(known)  # never skipped: revocations change under a cached token
            return known
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise InvalidToken("The token is not a well-formed JWT.") from exc
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise InvalidToken(f"Token algorithm {alg!r} is not accepted; only {ALGORITHM} is.")
        if self.required_typ is not None:
            typ = str(header.get("typ", "")).lower()
            if typ not in (self.required_typ.lower(), f"application/{self.required_typ.lower()}"):
                raise InvalidToken(f"Token type must be {self.required_typ!r}, not {typ or 'missing'!r}: "
                                   f"this is the wrong kind of token here. {self.how_to_get_one}")
        if (why := crit_problem(header)) is not None:
            raise InvalidToken(why)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token header has no key id (kid).")
        key = await self.keys.get(kid)
        if key is None:
            if getattr(self.keys, "fetch_failed", False):
                # We cannot tell a forged token from a new key: say so instead of a 401.
                raise ServiceUnavailable(
                    "The verification keys cannot be fetched from the access service right now; "
                    "retry in a few seconds.",
                    problem="keys-unavailable",
                    title="Verification keys unavailable",
                    headers={"Retry-After": "5"},
                )
            raise InvalidToken("The token was signed with an unknown key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_sub": True,
                    "require_aud": True,
                    "require_iss": True,
                    "leeway": self.leeway,
                },
            )
        except ExpiredSignatureError as exc:
            raise InvalidToken("The token has expired; get a new one from /oauth/token.") from exc
        except JWTClaimsError as exc:
            raise InvalidToken(f"The token's claims are not accepted here: {exc}.") from exc
        except JWTError as exc:
            raise InvalidToken("The token signature does not verify.") from exc
        if (why := iat_problem(claims, self.leeway)) is not None:
            raise InvalidToken(why)
        if self.extra_check is not None:
            await self.extra_check(claims)
        if self.cache is not None:
            self.cache.put(token, kid, key, claims)
        return claims

    async def verify(self, token: str) -> Principal:
        claims = await self.verify_claims(token)
        roles = claims.get("roles", [])
        if not isinstance(roles, list):
            raise InvalidToken("The token's roles claim is malformed.")
        return Principal(
            subject=str(claims["sub"]),
            client_id=str(claims.get("client_id", claims["sub"])),
            org_id=claims.get("org"),
            roles=frozenset(str(r) for r in roles),
            token_id=claims.get("jti"),
            claims=claims,
        )


_bearer = HTTPBearer(auto_error=False, description="Platform token from POST /oauth/token")
#: The platform bearer scheme, for routes that take it beside another authentication.
platform_bearer = _bearer


async def _authenticate(request: Request, token: str | None) -> Principal:
    # shared.runtime.runtime_of(app).verifier (shared.runtime imports this module).
    verifier: TokenVerifier = request.app.state.runtime.verifier
    if token is None:
        raise Unauthorized(
            f"This endpoint needs a bearer token. {verifier.how_to_get_one}",
            headers={"WWW-Authenticate": 'Bearer realm="sluice"'},
        )
    principal = await verifier.verify(token)
    request.state.principal = principal
    return principal


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from bearer credentials already read (for routes that read them themselves)."""
    bearer = credentials is not None and credentials.scheme.lower() == "bearer"
    return await _authenticate(request, credentials.credentials if credentials and bearer else None)


class _BearerPrincipal(HTTPBearer):
    """The platform bearer scheme and the caller behind it as *one* dependency.

    Why: FastAPI solves every dependency level per request, and on this box each level cost
    ~20-30 µs of CPU (issue 13's profiles); the principal was two levels (the ``HTTPBearer``
    scheme, then :func:`get_principal`) on every authenticated route. Being an ``HTTPBearer``
    under the same scheme name keeps the OpenAPI security requirement exactly as it was; the
    header is read as ``HTTPBearer`` reads it.
    """

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        authorization = request.headers.get("Authorization")
        scheme, credentials = get_authorization_scheme_param(authorization)
        bearer = bool(authorization and scheme and credentials) and scheme.lower() == "bearer"
        return await _authenticate(request, credentials if bearer else None)


_platform_principal = _BearerPrincipal(auto_error=False, description=_bearer.model.description,
                                       scheme_name="HTTPBearer")


CurrentPrincipal = Annotated[Principal, Depends(_platform_principal)]


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding at least one of ``roles``."""
    wanted = frozenset(roles)

    async def _check(principal: CurrentPrincipal) -> Principal:
        if not principal.roles & wanted:
            held = ", ".join(sorted(principal.roles)) or "none"
            need = " or ".join(sorted(wanted))
            raise Forbidden(
                f"This endpoint is for the {need} role; your token has: {held}.",
                required_roles=sorted(wanted),
            )
        return principal

    _check.__name__ = f"require_{'_or_'.join(sorted(wanted))}"
    return _check


Operator = Annotated[Principal, Depends(require_roles("operator"))]
Service = Annotated[Principal, Depends(require_roles("service"))]
Provider = Annotated[Principal, Depends(require_roles("provider"))]
Buyer = Annotated[Principal, Depends(require_roles("buyer"))]
Regulator = Annotated[Principal, Depends(require_roles("regulator", "operator"))]
