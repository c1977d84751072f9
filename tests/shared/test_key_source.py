"""The JWKS key source: a fetch failure is not mistaken for a forged token."""

from __future__ import annotations

import httpx
import pytest

from shared.auth import InvalidToken, JWKSKeySource, TokenVerifier
from shared.errors import ServiceUnavailable
from tests.support import TestKeys


def _failing(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("access is down", request=request)


async def test_unreachable_jwks_is_503_not_401(test_keys: TestKeys) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_failing)) as http:
        keys = JWKSKeySource("http://access.invalid/.well-known/jwks.json", http)
        verifier = TokenVerifier(keys, issuer="http://127.0.0.1:8003", audience="sluice-api")
        with pytest.raises(ServiceUnavailable):
            await verifier.verify(test_keys.token(roles=["buyer"]))


async def test_jwks_is_fetched_once_then_unknown_kids_are_throttled(test_keys: TestKeys) -> None:
    calls = 0

    def serve(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"keys": [test_keys.public_jwk]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        keys = JWKSKeySource("http://access/.well-known/jwks.json", http, min_refetch_seconds=60)
        verifier = TokenVerifier(keys, issuer="http://127.0.0.1:8003", audience="sluice-api")
        for _ in range(5):
            assert (await verifier.verify(test_keys.token(roles=["buyer"]))).roles == {"buyer"}
        for _ in range(5):
            assert await keys.get("unknown-kid") is None
    assert calls == 1


class RotatingJWKS:
    """A JWKS endpoint whose keys (and Cache-Control) the test changes."""

    def __init__(self, keys: list[dict[str, object]], cache_control: str = "public, max-age=60") -> None:
        self.keys, self.cache_control = keys, cache_control

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": self.keys}, headers={"Cache-Control": self.cache_control})


async def test_a_key_no_longer_published_is_refused_from_the_next_fetch_on(test_keys: TestKeys) -> None:
    jwks = RotatingJWKS([test_keys.public_jwk])
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        keys = JWKSKeySource("http://access/.well-known/jwks.json", http, cache_seconds=0,
                             min_refetch_seconds=0)
        verifier = TokenVerifier(keys, issuer="http://127.0.0.1:8003", audience="sluice-api")
        token = test_keys.token(roles=["buyer"])
        assert await verifier.verify(token)
        jwks.keys = []  # the key retired
        with pytest.raises(InvalidToken):
            await verifier.verify(token)


async def test_the_jwks_max_age_bounds_how_long_a_key_is_trusted(test_keys: TestKeys) -> None:
    jwks = RotatingJWKS([test_keys.public_jwk], cache_control="public, max-age=0")
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        keys = JWKSKeySource("http://access/.well-known/jwks.json", http, cache_seconds=300,
                             min_refetch_seconds=0)
        verifier = TokenVerifier(keys, issuer="http://127.0.0.1:8003", audience="sluice-api")
        token = test_keys.token(roles=["buyer"])
        assert await verifier.verify(token)
        jwks.keys = []  # retired: the access service had said not to cache past now
        with pytest.raises(InvalidToken):
            await verifier.verify(token)


async def test_the_last_known_keys_stay_while_the_jwks_cannot_be_fetched(test_keys: TestKeys) -> None:
    jwks = RotatingJWKS([test_keys.public_jwk], cache_control="public, max-age=0")
    up = {"yes": True}

    def serve(request: httpx.Request) -> httpx.Response:
        return jwks(request) if up["yes"] else _failing(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        keys = JWKSKeySource("http://access/.well-known/jwks.json", http, min_refetch_seconds=0)
        verifier = TokenVerifier(keys, issuer="http://127.0.0.1:8003", audience="sluice-api")
        token = test_keys.token(roles=["buyer"])
        assert await verifier.verify(token)
        up["yes"] = False  # access is down: tokens that were valid stay valid
        assert await verifier.verify(token)
