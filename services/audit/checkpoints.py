"""Signed checkpoints: the log's commitments to regulators.

A checkpoint (C2SP tlog-checkpoint in a signed note) commits to one tree size
and root. The checkpointer signs a new one whenever the tree grew, always for
a size at least as large as the latest and with the root computed from the
stored tree, so two checkpoints can never disagree about history: the tree of
size n is fixed once n leaves are committed. Several replicas may run the
checkpointer; an advisory lock (PostgreSQL) and the primary key on
``tree_size`` keep them from signing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit import log, tree
from services.audit.models import checkpoints, log_keys, writer_lock
from services.audit.settings import AuditSettings
from services.audit.tree import TreeCache
from services.audit.verifylib import Checkpoint, NoteSigner, parse_signer_key, sign_checkpoint
from shared.db import serialise_with_replicas, utcnow

logger = logging.getLogger("sluice.audit")

CHECKPOINT_LOCK_KEY = 0x51C1A0D2
#: Replicas starting together on an empty database: exactly one generates the log key.
LOG_KEY_LOCK_KEY = 0x51C1A0D3


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    key_id: str
    created_at: datetime


def _stored(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(
        int(row.tree_size), bytes(row.root_hash), row.note, row.key_id, row.created_at
    )


async def load_signer(sessionmaker: async_sessionmaker[AsyncSession], settings: AuditSettings) -> NoteSigner:
    """The configured key, or (development) the key generated on first start."""
    if settings.checkpoint_key is not None:
        signer = parse_signer_key(settings.checkpoint_key.get_secret_value())
        if signer.name != settings.log_origin:
            logger.warning(
                "checkpoint key name %r differs from the log origin %r; verifiers must be told "
                "the origin explicitly", signer.name, settings.log_origin,
            )
        return signer
    async with sessionmaker() as session, session.begin():
        await serialise_with_replicas(session, LOG_KEY_LOCK_KEY, writer_lock)
        stored = await session.scalar(
            select(log_keys.c.private_key)
            .where(log_keys.c.key_name == settings.log_origin)
            .order_by(log_keys.c.id)
            .limit(1)
        )
        if stored is None:
            signer = NoteSigner.generate(settings.log_origin)
            await session.execute(
                insert(log_keys).values(
                    key_name=signer.name, private_key=signer.skey, created_at=utcnow()
                )
            )
            stored = signer.skey
    logger.warning(
        "no SLUICE_AUDIT_CHECKPOINT_KEY configured: checkpoints are signed with a key kept in the "
        "audit database. Generate one with `python -m services.audit keygen` and configure it."
    )
    return parse_signer_key(stored)


async def latest(session: AsyncSession) -> StoredCheckpoint | None:
    row = (
        await session.execute(select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1))
    ).first()
    return _stored(row) if row else None


async def history(session: AsyncSession, after_size: int | None, limit: int) -> list[StoredCheckpoint]:
    stmt = select(checkpoints).order_by(checkpoints.c.tree_size).limit(limit)
    if after_size is not None:
        stmt = stmt.where(checkpoints.c.tree_size > after_size)
    return [_stored(r) for r in await session.execute(stmt)]


class Checkpointer:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], signer: NoteSigner, origin: str,
        cache: TreeCache | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.cache = cache
        self.signer = signer
        self.origin = origin
        self._lock = asyncio.Lock()

    async def run_once(self) -> StoredCheckpoint | None:
        """Sign a checkpoint for the current size if it is larger than the
        latest one (or if there is none yet); return it, or None."""
        async with self._lock, self.sessionmaker() as session:
            try:
                async with session.begin():
                    await log.take_write_lock(session, CHECKPOINT_LOCK_KEY)
                    last = await session.scalar(select(func.max(checkpoints.c.tree_size)))
                    size = await tree.tree_size(session)
                    if self.cache is not None:
                        self.cache.saw_size(size)
                    if last is not None and size <= last:
                        return None
                    root = await tree.root_hash(session, size, self.cache)
                    note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
                    cp = StoredCheckpoint(size, root, note, f"{self.signer.key_id:08x}", utcnow())
                    await session.execute(
                        insert(checkpoints).values(
                            tree_size=cp.tree_size, root_hash=cp.root_hash, note=cp.note,
                            key_id=cp.key_id, created_at=cp.created_at,
                        )
                    )
                    return cp
            except IntegrityError:
                return None  # another replica signed this size first
