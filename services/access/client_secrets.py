"""Client secrets: generated with ``secrets``, stored only as an Argon2id hash."""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile defaults



@functools.cache
def _dummy_hash() -> str:
    # Verified when the client id is unknown, so that a wrong id and a wrong
    # secret take the same time (no client-id enumeration by timing).
    return _hasher.hash(secrets.token_urlsafe(16))


def new_client_secret() -> str:
    return "sls_" + secrets.token_urlsafe(32)


def new_client_id(prefix: str = "cli") -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


async def hash_secret(secret: str) -> str:
    return await asyncio.to_thread(_hasher.hash, secret)


def _verify(hash_: str, secret: str) -> bool:
    try:
        return _hasher.verify(hash_, secret)
    except (VerificationError, InvalidHashError):
        return False


async def verify_secret(hash_: str | None, secret: str) -> bool:
    """Constant-work check; ``hash_`` None means the client does not exist."""
    ok = await asyncio.to_thread(_verify, hash_ or _dummy_hash(), secret)
    return ok and hash_ is not None
