"""The JWKS key source: a fetch failure is not mistaken for a forged token."""

from __future__ import annotations

import httpx
import pytest

from shared.auth import JWKSKeySource, TokenVerifier
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
