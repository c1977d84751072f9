"""Every service's TokenVerifier remembers verified tokens until they expire, never failures,
re-checks the key on every hit, and never lets a hit skip its extra_check."""

from __future__ import annotations

from typing import Any

import pytest
from jose.backends.base import Key

from shared.auth import InvalidToken, StaticKeySource, TokenVerifier
from tests.support import TestKeys

ISSUER, AUDIENCE = "http://127.0.0.1:8003", "sluice-api"


class CountingKeys(StaticKeySource):
    """The test keys; counts lookups, and can withdraw the key."""

    def __init__(self, keys: TestKeys) -> None:
        self.known: dict[str, Key] = dict(keys.key_source()._keys)  # type: ignore[arg-type]
        super().__init__(lambda: self.known)


def verifier(keys: CountingKeys, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, **kwargs)


async def decodes(v: TokenVerifier, token: str, monkeypatch: pytest.MonkeyPatch, times: int) -> int:
    """How many of ``times`` verifications of ``token`` decoded the JWT (cache misses)."""
    from shared import auth

    calls = 0
    real = auth.jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting)
    for _ in range(times):
        await v.verify(token)
    return calls


async def test_a_valid_token_is_decoded_once(test_keys: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    v = verifier(CountingKeys(test_keys))
    assert await decodes(v, test_keys.token(roles=["buyer"]), monkeypatch, 3) == 1


async def test_without_a_cache_every_use_decodes(test_keys: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    v = verifier(CountingKeys(test_keys), cache_size=0)
    assert await decodes(v, test_keys.token(roles=["buyer"]), monkeypatch, 3) == 3


async def test_an_expired_token_is_not_served_from_the_cache(test_keys: TestKeys) -> None:
    v = verifier(CountingKeys(test_keys), leeway=0)
    token = test_keys.token(ttl=600)
    await v.verify(token)
    assert v.cache is not None
    entry = next(iter(v.cache._entries.values()))
    v.cache._entries[next(iter(v.cache._entries))] = type(entry)(entry.kid, entry.key, entry.claims, 0.0)
    assert await v.cache.get(token, v.keys) is None  # expired entries are dropped


async def test_a_withdrawn_key_stops_a_cached_token(test_keys: TestKeys) -> None:
    keys = CountingKeys(test_keys)
    v = verifier(keys)
    token = test_keys.token()
    await v.verify(token)
    keys.known = {}
    with pytest.raises(InvalidToken, match="unknown key"):
        await v.verify(token)


async def test_failures_are_not_remembered(test_keys: TestKeys) -> None:
    v = verifier(CountingKeys(test_keys))
    token = test_keys.token(aud="someone-else")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await v.verify(token)
    assert v.cache is not None and not v.cache._entries


async def test_a_cached_token_is_still_refused_by_the_extra_check(test_keys: TestKeys) -> None:
    revoked: set[str] = set()

    async def not_revoked(claims: dict[str, Any]) -> None:
        if claims["jti"] in revoked:
            raise InvalidToken("This token no longer grants access: it has been revoked.")

    v = verifier(CountingKeys(test_keys), extra_check=not_revoked)
    token = test_keys.token(jti="j-1")
    await v.verify(token)
    assert v.cache is not None and await v.cache.get(token, v.keys) is not None
    revoked.add("j-1")
    with pytest.raises(InvalidToken, match="revoked"):
        await v.verify(token)


async def test_the_cache_is_bounded(test_keys: TestKeys) -> None:
    v = verifier(CountingKeys(test_keys), cache_size=2)
    tokens = [test_keys.token(jti=f"j{i}") for i in range(3)]
    for t in tokens:
        await v.verify(t)
    assert v.cache is not None
    assert await v.cache.get(tokens[0], v.keys) is None  # evicted by the third
    assert await v.cache.get(tokens[2], v.keys) is not None
