"""``serve --workers N``: replicas starting at the same moment on an empty database."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from sqlalchemy import func, select

from services.access.bootstrap import PLATFORM_ORG_NAME, bootstrap_identity
from services.access.keys import KeyStore
from services.access.models import ApiClient, Organisation, SigningKey
from services.access.settings import AccessSettings
from shared.db import Database
from tests.conftest import DatabaseFactory


async def test_replicas_starting_together_create_one_key_one_platform_org_and_each_client_once(
    database_url: DatabaseFactory,
) -> None:
    url = database_url("access")
    settings = AccessSettings(
        database_url=url, bootstrap_client_id="operator", bootstrap_client_secret=SecretStr("s" * 24),
        bootstrap_service_clients={"svc-orders": SecretStr("o" * 24)},
    )
    replicas = [Database(url) for _ in range(3)]

    async def start(db: Database) -> None:
        await KeyStore(db.sessionmaker, bits=2048).load()
        await bootstrap_identity(db.sessionmaker, settings)

    try:
        await asyncio.gather(*(start(db) for db in replicas))
        async with replicas[0].sessionmaker() as session:
            active = await session.scalar(
                select(func.count()).select_from(SigningKey).where(SigningKey.status == "active"))
            orgs = await session.scalar(
                select(func.count()).select_from(Organisation).where(Organisation.name == PLATFORM_ORG_NAME))
            clients = sorted(await session.scalars(select(ApiClient.client_id)))
    finally:
        for db in replicas:
            await db.dispose()
    assert (active, orgs, clients) == (1, 1, ["operator", "svc-orders"])
