"""The catalog remembers verified tokens only until they expire, and never remembers failures."""

from __future__ import annotations

import time

import pytest

from services.catalog.auth_cache import VerifiedTokens
from shared.auth import InvalidToken, Principal


class CountingVerifier:
    def __init__(self, exp: float, fail: bool = False) -> None:
        self.calls = 0
        self.exp = exp
        self.fail = fail

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        if self.fail:
            raise InvalidToken("The token signature does not verify.")
        return Principal("cli", "cli", "org", frozenset({"buyer"}), "jti", {"exp": self.exp})


async def test_a_valid_token_is_verified_once() -> None:
    tokens, verifier = VerifiedTokens(), CountingVerifier(exp=time.time() + 600)
    for _ in range(3):
        await tokens.principal(verifier, "tok")  # type: ignore[arg-type]
    assert verifier.calls == 1


async def test_an_expired_token_is_verified_again() -> None:
    tokens, verifier = VerifiedTokens(), CountingVerifier(exp=time.time() - 1)
    await tokens.principal(verifier, "tok")  # type: ignore[arg-type]
    await tokens.principal(verifier, "tok")  # type: ignore[arg-type]
    assert verifier.calls == 2


async def test_failures_are_not_remembered() -> None:
    tokens, verifier = VerifiedTokens(), CountingVerifier(exp=time.time() + 600, fail=True)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await tokens.principal(verifier, "tok")  # type: ignore[arg-type]
    assert verifier.calls == 2


async def test_the_cache_is_bounded() -> None:
    tokens, verifier = VerifiedTokens(max_entries=2), CountingVerifier(exp=time.time() + 600)
    for t in ("a", "b", "c", "a"):
        await tokens.principal(verifier, t)  # type: ignore[arg-type]
    assert verifier.calls == 4  # "a" was evicted by "c"


