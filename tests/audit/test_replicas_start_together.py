"""Two audit replicas starting at the same moment on an empty database, without a configured
checkpoint key: exactly one log key is generated and both replicas sign checkpoints with it
(two keys would give the log two signers, and verifiers would reject one replica's notes)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from services.audit.checkpoints import load_signer
from services.audit.models import log_keys
from services.audit.settings import AuditSettings
from shared.db import Database
from tests.conftest import DatabaseFactory


async def test_replicas_starting_together_generate_one_log_key(database_url: DatabaseFactory) -> None:
    url = database_url("audit")
    settings = AuditSettings(database_url=url)
    replicas = [Database(url) for _ in range(3)]  # separate engines, like separate processes
    try:
        signers = await asyncio.gather(*(load_signer(db.sessionmaker, settings) for db in replicas))
        async with replicas[0].sessionmaker() as session:
            stored = await session.scalar(select(func.count()).select_from(log_keys))
    finally:
        for db in replicas:
            await db.dispose()
    assert stored == 1
    assert len({s.skey for s in signers}) == 1
