"""Signing keys: generation, rotation and the published JWKS.

Keys live in the database so every replica signs with the same key. Each
replica loads them once into built jose key objects (never per token) and
re-reads them every ``key_refresh_seconds`` to pick up rotations made by
another replica.

Rotation: the new key becomes ``active`` and signs from now on; the previous
active key becomes ``retiring`` and stays in the JWKS until every token it
signed has expired (``retire_after``), so rotation needs no downtime. Other
replicas keep signing with the old key until their next refresh, so the grace
period counts that interval too.

A replica that is asked about a key it does not know (a token signed by a key
another replica just created), or serves the JWKS, re-reads the keys first
(concurrent askers share one read, so a flood of unknown kids costs one query
at a time): a rotation is visible on every replica at once, not after the next
periodic refresh. The JWKS says how long it may be cached (never past
the moment a retiring key retires), so verifiers elsewhere drop a retired key
in time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk
from jose.backends.base import Key
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.access.account_status import KeyStatus
from services.access.models import SigningKey
from shared.auth import ALGORITHM
from shared.db import serialise_with_replicas, utcnow

logger = logging.getLogger("sluice.access.keys")

#: Tokens may be verified with this much clock skew; a retiring key outlives
#: its last token by at least this margin.
VERIFY_LEEWAY = timedelta(seconds=60)



@dataclass(frozen=True)
class LoadedKey:
    kid: str
    status: str
    signing: Key
    verifying: Key
    public_jwk: dict[str, Any]
    retire_after: datetime | None


#: pg_advisory_xact_lock key of start-up work (first key, bootstrap clients): "sluice access init".
_STARTUP_LOCK = 0x51AC1417


async def serialise_startup(session: AsyncSession) -> None:
    """Make replicas starting together (``serve --workers N``) do their first-start work one
    after the other, so the second sees what the first created instead of creating it twice.

    PostgreSQL: a transaction-level advisory lock. SQLite: a write that matches no row first,
    so the transaction holds the database write lock before it reads.
    """
    await serialise_with_replicas(session, _STARTUP_LOCK, SigningKey.__table__)


def _new_kid() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


def generate_signing_key(bits: int, passphrase: bytes | None) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = _new_kid()
    public = jwk.construct(public_pem, ALGORITHM).to_dict()
    public_jwk = {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid,
                  "n": public["n"], "e": public["e"]}
    return SigningKey(kid=kid, private_pem=pem, public_jwk=public_jwk, status=KeyStatus.ACTIVE,
                      created_at=utcnow())


def _load(row: SigningKey, passphrase: bytes | None) -> LoadedKey:
    private = serialization.load_pem_private_key(row.private_pem.encode(), password=passphrase)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return LoadedKey(
        kid=row.kid,
        status=row.status,
        signing=jwk.construct(pem, ALGORITHM),
        verifying=jwk.construct(row.public_jwk, ALGORITHM),
        public_jwk=dict(row.public_jwk),
        retire_after=row.retire_after,
    )


class KeyStore:
    """The replica's view of the signing keys."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        bits: int = 2048,
        passphrase: bytes | None = None,
        max_token_lifetime: timedelta = timedelta(minutes=15),
        refresh_interval: timedelta = timedelta(seconds=30),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.bits = bits
        self.passphrase = passphrase
        self.max_token_lifetime = max_token_lifetime
        self.refresh_interval = refresh_interval
        self._keys: dict[str, LoadedKey] = {}
        self._active: LoadedKey | None = None
        self._loaded_at = float("-inf")
        self._refresh_lock = asyncio.Lock()

    # --- reading -----------------------------------------------------------
    @property
    def active(self) -> LoadedKey:
        if self._active is None:
            raise RuntimeError("signing keys not loaded; KeyStore.load() runs at start-up")
        return self._active

    def verification_keys(self) -> dict[str, Key]:
        now = utcnow()
        return {
            k.kid: k.verifying
            for k in self._keys.values()
            if k.status == KeyStatus.ACTIVE or (k.retire_after is not None and k.retire_after > now)
        }

    async def get(self, kid: str) -> Key | None:
        """The key that verifies ``kid`` (a ``KeySource``). A kid this replica does not know
        may be a key another replica has just created: read the keys again before saying no."""
        asked = time.monotonic()
        key = self.verification_keys().get(kid)
        if key is None:
            await self.read_since(asked)
            key = self.verification_keys().get(kid)
        return key

    async def read_since(self, moment: float) -> None:
        """Make sure the keys in memory were read from the database after ``moment`` (a
        ``time.monotonic()``): callers waiting together share one read."""
        async with self._refresh_lock:
            if self._loaded_at < moment:
                await self.refresh()

    def jwks_max_age(self, cap: int) -> int:
        """How long a verifier may cache the JWKS: ``cap`` seconds, but never past the moment a
        retiring key retires (so nobody keeps accepting it after its grace period)."""
        now = utcnow()
        left = [(k.retire_after - now).total_seconds() for k in self._keys.values()
                if k.status != KeyStatus.ACTIVE and k.retire_after is not None and k.retire_after > now]
        return max(0, int(min([float(cap), *left])))

    def jwks(self) -> dict[str, Any]:
        now = utcnow()
        return {
            "keys": [
                k.public_jwk
                for k in self._keys.values()
                if k.status == KeyStatus.ACTIVE or (k.retire_after is not None and k.retire_after > now)
            ]
        }

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"kid": k.kid, "status": k.status, "retire_after": k.retire_after}
            for k in sorted(self._keys.values(), key=lambda k: k.kid)
        ]

    # --- loading and rotating ------------------------------------------------
    async def load(self) -> None:
        """Read the keys; create the first one on an empty database (once, however many
        replicas start at the same moment)."""
        started = time.monotonic()
        async with self.sessionmaker() as session, session.begin():
            await serialise_startup(session)
            rows = await self._current_rows(session)
            if not any(r.status == KeyStatus.ACTIVE for r in rows):
                row = await asyncio.to_thread(generate_signing_key, self.bits, self.passphrase)
                session.add(row)
                await session.flush()
                rows.append(row)
                logger.info("created the first signing key %s", row.kid)
        await self._apply(rows)
        self._loaded_at = started

    async def _current_rows(self, session: AsyncSession) -> list[SigningKey]:
        result = await session.scalars(
            select(SigningKey).where(SigningKey.status.in_((KeyStatus.ACTIVE, KeyStatus.RETIRING)))
        )
        return list(result)

    async def _apply(self, rows: list[SigningKey]) -> None:
        loaded: dict[str, LoadedKey] = {}
        for row in rows:
            existing = self._keys.get(row.kid)
            if existing is not None and existing.status == row.status:
                loaded[row.kid] = existing  # built once; reuse
            else:
                loaded[row.kid] = await asyncio.to_thread(_load, row, self.passphrase)
        actives = sorted((k for k in loaded.values() if k.status == KeyStatus.ACTIVE), key=lambda k: k.kid)
        self._keys = loaded
        if actives:
            self._active = actives[-1]

    async def refresh(self) -> None:
        started = time.monotonic()
        async with self.sessionmaker() as session:
            rows = await self._current_rows(session)
        await self._apply(rows)
        self._loaded_at = started  # what the database said then, however long loading took

    async def rotate(
        self, record: Callable[[AsyncSession, SigningKey], Awaitable[None]] | None = None
    ) -> SigningKey:
        """Store a new active key, retire the previous one, and reload; ``record`` writes the
        rotation's audit event in the same transaction (never a rotation without its event).

        Its own transaction, not the request's unit of work, and on purpose: the key must be
        committed before this replica reloads and signs with it, and the rotation is answered
        only once it does; the request's transaction commits after the endpoint returns, and an
        after-commit hook cannot await the reload."""
        new = await asyncio.to_thread(generate_signing_key, self.bits, self.passphrase)
        now = utcnow()
        # Other replicas sign with the old key until their next refresh; its last token
        # expires a token lifetime after that; verifiers accept it a leeway longer.
        retire_after = now + self.refresh_interval + self.max_token_lifetime + VERIFY_LEEWAY
        async with self.sessionmaker() as session, session.begin():
            for row in await self._current_rows(session):
                if row.status == KeyStatus.ACTIVE:
                    row.status, row.retire_after = KeyStatus.RETIRING, retire_after
                elif row.retire_after is not None and row.retire_after <= now:
                    row.status = KeyStatus.RETIRED
            session.add(new)
            if record is not None:
                await session.flush()
                await record(session, new)
        await self.refresh()
        logger.info("rotated signing key: %s now signs", new.kid)
        return new
