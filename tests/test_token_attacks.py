"""Every service refuses forged, expired and misdirected tokens with 401 problem+json.

Each attack is a variant of a token the service accepts (the control case),
so a test passes only because of the one thing the attack changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwk, jwt

from services.access.runtime import AccessState
from shared.settings import PLATFORM_AUDIENCE
from tests.conftest import AppFactory
from tests.support import SERVICES, RunningApp, TestKeys


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """Signs tokens the way the service under test expects them."""

    def __init__(self, svc: RunningApp, test_keys: TestKeys, service: str) -> None:
        self.service = service
        settings = svc.settings
        if service == "access":
            key = svc.state(AccessState).keys.active
            self.kid, self.private, self.public_jwk = key.kid, key.signing, key.public_jwk
        else:
            self.kid, self.private, self.public_jwk = (
                test_keys.kid, test_keys.private_pem.decode(), test_keys.public_jwk)
        self.iss = settings.token_issuer
        self.aud = settings.token_audience
        self.typ = "at+jwt" if service == "dataservice" else "JWT"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss, "sub": "cli_attacker", "aud": self.aud, "iat": now, "nbf": now,
            "exp": now + 300, "jti": "j1", "client_id": "cli_attacker", "org": "org_x",
            "roles": ["operator"], "scope": "query" if self.service == "dataservice" else "operator",
        }
        claims.update(overrides)
        return claims

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, "typ": self.typ, **header}
        return jwt.encode(claims, self.private, algorithm="RS256", headers=headers)

    def public_pem(self) -> bytes:
        key = jwk.construct(self.public_jwk, "RS256")
        return key.to_pem()  # type: ignore[no-any-return]


@pytest.fixture(params=SERVICES)
async def target(
    request: pytest.FixtureRequest, service_app: AppFactory, test_keys: TestKeys
) -> AsyncIterator[tuple[RunningApp, Signer]]:
    async with service_app(str(request.param)) as svc:
        yield svc, Signer(svc, test_keys, str(request.param))


async def me(svc: RunningApp, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await svc.client.get("/v1/me", headers=headers)


async def test_a_well_formed_token_is_accepted(target: tuple[RunningApp, Signer]) -> None:
    svc, signer = target
    resp = await me(svc, signer.sign(signer.claims()))
    assert resp.status_code == 200, resp.text
    assert resp.json()["subject"] == "cli_attacker"


async def test_an_iat_a_little_ahead_is_within_the_leeway(target: tuple[RunningApp, Signer]) -> None:
    # Clocks drift: a token from an issuer a few seconds ahead is still accepted.
    svc, signer = target
    resp = await me(svc, signer.sign(signer.claims(iat=int(time.time()) + 10)))
    assert resp.status_code == 200, resp.text


def _alg_none(signer: Signer) -> str:
    header = {"alg": "none", "typ": signer.typ, "kid": signer.kid}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(signer.claims()).encode())}."


def _hs256_with_public_key(signer: Signer) -> str:
    # The classic key-confusion attack: HMAC keyed with the (public) RSA key.
    header = {"alg": "HS256", "typ": signer.typ, "kid": signer.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(signer.claims()).encode())}"
    mac = hmac.new(signer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _other_key(signer: Signer) -> str:
    other = TestKeys.generate()
    return jwt.encode(signer.claims(), other.private_pem.decode(), algorithm="RS256",
                      headers={"kid": signer.kid, "typ": signer.typ})


ATTACKS: dict[str, Callable[[Signer], str]] = {
    "alg_none": _alg_none,
    "hs256_keyed_with_public_key": _hs256_with_public_key,
    "expired": lambda s: s.sign(s.claims(iat=int(time.time()) - 3600, nbf=int(time.time()) - 3600,
                                         exp=int(time.time()) - 120)),
    "other_audience": lambda s: s.sign(s.claims(aud="https://elsewhere.example")),
    "other_issuer": lambda s: s.sign(s.claims(iss="https://evil.example")),
    "unknown_kid": lambda s: s.sign(s.claims(), kid="not-a-key"),
    "signed_by_another_key": _other_key,
    "garbage": lambda s: "not.a.jwt",
    # iat far beyond the leeway in the future: a token "issued" tomorrow is forged or from a
    # broken clock; docs/security.md says iat is required, and it must be believable.
    "iat_in_the_future": lambda s: s.sign(s.claims(iat=int(time.time()) + 3600,
                                                   exp=int(time.time()) + 3900)),
    # RFC 7515 §4.1.11: a critical header extension the verifier does not understand.
    "unknown_crit_header": lambda s: s.sign(s.claims(), crit=["exp-policy"], **{"exp-policy": 1}),
    "malformed_crit_header": lambda s: s.sign(s.claims(), crit="kid"),
    "tampered_payload": lambda s: (lambda t: t.split(".")[0] + "." + b64(json.dumps(
        s.claims(roles=["operator", "regulator"])).encode()) + "." + t.split(".")[2])(s.sign(s.claims())),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_token_is_401_problem(target: tuple[RunningApp, Signer], attack: str) -> None:
    svc, signer = target
    resp = await me(svc, ATTACKS[attack](signer))
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["status"] == 401


async def test_missing_token_is_401_with_www_authenticate(target: tuple[RunningApp, Signer]) -> None:
    svc, _ = target
    resp = await me(svc, None)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    expected = "/tokens" if svc.settings.service_name == "dataservice" else "POST /oauth/token"
    assert expected in resp.json()["detail"]


# --- The two kinds of token, mixed up ---------------------------------------------------
# A platform token (typ JWT, aud sluice-api, roles) and a data-access token (typ at+jwt,
# aud = one data service, scope query) differ in three properties. Each case changes ONE of
# them on a token the service accepts (the control above, of the service's own kind), so the
# 401 is about that property alone, and the problem detail must name it.

PLATFORM_SERVICES = tuple(s for s in SERVICES if s != "dataservice")
A_DATA_SERVICE = "http://127.0.0.1:8010"  # the audience of data-access tokens for the demo's data service

PLATFORM_TOKEN_AS_DATA_TOKEN: dict[str, tuple[Callable[[Signer], str], str]] = {
    # property changed: (token, what the 401's detail must say)
    "type": (lambda s: s.sign(s.claims(), typ="JWT"), "type must be 'at+jwt'"),
    "audience": (lambda s: s.sign(s.claims(aud=PLATFORM_AUDIENCE)), "audience"),
    "scope": (lambda s: s.sign(s.claims(scope="buyer")), "scope 'query'"),
}
DATA_TOKEN_AS_PLATFORM_TOKEN: dict[str, tuple[Callable[[Signer], str], str]] = {
    "type": (lambda s: s.sign(s.claims(), typ="at+jwt"), "type must be 'JWT'"),
    "audience": (lambda s: s.sign(s.claims(aud=A_DATA_SERVICE)), "audience"),
}


@pytest.mark.parametrize("changed", sorted(PLATFORM_TOKEN_AS_DATA_TOKEN))
async def test_the_data_service_refuses_a_token_with_one_platform_property(
    service_app: AppFactory, test_keys: TestKeys, changed: str
) -> None:
    async with service_app("dataservice") as svc:
        signer = Signer(svc, test_keys, "dataservice")
        assert (await me(svc, signer.sign(signer.claims()))).status_code == 200  # the control
        make, reason = PLATFORM_TOKEN_AS_DATA_TOKEN[changed]
        resp = await me(svc, make(signer))
        assert resp.status_code == 401, resp.text
        assert reason in resp.json()["detail"], resp.json()["detail"]


@pytest.mark.parametrize("changed", sorted(DATA_TOKEN_AS_PLATFORM_TOKEN))
@pytest.mark.parametrize("service", PLATFORM_SERVICES)
async def test_a_platform_service_refuses_a_token_with_one_data_access_property(
    service_app: AppFactory, test_keys: TestKeys, service: str, changed: str
) -> None:
    async with service_app(service) as svc:
        signer = Signer(svc, test_keys, service)
        assert (await me(svc, signer.sign(signer.claims()))).status_code == 200  # the control
        make, reason = DATA_TOKEN_AS_PLATFORM_TOKEN[changed]
        resp = await me(svc, make(signer))
        assert resp.status_code == 401, resp.text
        assert reason in resp.json()["detail"], resp.json()["detail"]


def test_public_pem_is_really_the_public_key(test_keys: TestKeys) -> None:
    # Guard for the HS256 attack above: it must use the public key bytes.
    pem = jwk.construct(test_keys.public_jwk, "RS256").to_pem()
    assert serialization.load_pem_public_key(pem)
