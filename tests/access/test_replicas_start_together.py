"""Two access replicas starting at the same moment on an empty database (make cluster starts
all replicas at once): one creates the first signing key and the bootstrap clients, the other
finds them; neither fails, and they sign with the same key."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import func, select

from services.access.bootstrap import PLATFORM_ORG_NAME
from services.access.models import ApiClient, Organisation, SigningKey
from tests.conftest import DatabaseFactory
from tests.support import RunningApp, run_app

BOOTSTRAP = {"bootstrap_client_id": "operator", "bootstrap_client_secret": "op-secret-for-tests",
             "bootstrap_service_clients": {"svc-catalog": "svc-secret-for-tests"}}


async def start_together(url: str, n: int, stack: contextlib.AsyncExitStack) -> list[RunningApp]:
    """``n`` replicas (each its own engine and pool, like separate processes), started at once."""
    return list(await asyncio.gather(*(stack.enter_async_context(run_app("access", url, **BOOTSTRAP))
                                       for _ in range(n))))


async def test_replicas_starting_together_create_one_signing_key_and_sign_with_it(
        database_url: DatabaseFactory) -> None:
    async with contextlib.AsyncExitStack() as stack:
        replicas = await start_together(database_url("access"), 3, stack)
        async with replicas[0].app.state.db.sessionmaker() as session:
            active = await session.scalar(
                select(func.count()).select_from(SigningKey).where(SigningKey.status == "active"))
        assert active == 1
        assert len({r.app.state.keys.active.kid for r in replicas}) == 1


async def test_replicas_starting_together_bootstrap_the_clients_once(database_url: DatabaseFactory) -> None:
    async with contextlib.AsyncExitStack() as stack:
        replicas = await start_together(database_url("access"), 3, stack)
        async with replicas[0].app.state.db.sessionmaker() as session:
            clients = sorted(await session.scalars(select(ApiClient.client_id)))
            orgs = await session.scalar(select(func.count()).select_from(Organisation)
                                        .where(Organisation.name == PLATFORM_ORG_NAME))
        assert clients == ["operator", "svc-catalog"]
        assert orgs == 1
