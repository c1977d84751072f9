"""Client secrets: generated with ``secrets``, stored only as an Argon2id hash."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import weakref

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile defaults

#: Argon2id is deliberately expensive (64 MiB and several lanes per check). Unbounded, a burst of
#: token requests puts one check per worker thread on the CPUs at once: the event loop starves,
#: /readyz stops answering, and the load balancer takes the replica out (every access call then
#: fails, JWKS included). At most this many checks run at once per process; the others wait their
#: turn on the event loop, which keeps serving everything else.
MAX_CONCURRENT_HASHES = max(1, (os.cpu_count() or 1) // 2)
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _hash_slots() -> asyncio.Semaphore:
    """The process's hashing slots (one semaphore per event loop: a semaphore belongs to one)."""
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
    return _slots[loop]


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
    async with _hash_slots():
        return await asyncio.to_thread(_hasher.hash, secret)


def _verify(hash_: str, secret: str) -> bool:
    try:
        return _hasher.verify(hash_, secret)
    except (VerificationError, InvalidHashError):
        return False


async def verify_secret(hash_: str | None, secret: str) -> bool:
    """Constant-work check; ``hash_`` None means the client does not exist."""
    async with _hash_slots():
        ok = await asyncio.to_thread(_verify, hash_ or _dummy_hash(), secret)
    return ok and hash_ is not None
