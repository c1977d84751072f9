"""First-start bootstrap: the platform organisation, the first operator client
and the internal service clients."""

from __future__ import annotations

import logging
import sys

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.access import identity
from services.access.audit_events import audit
from services.access.keys import serialise_startup
from services.access.models import ApiClient, Organisation
from services.access.settings import AccessSettings
from shared.events import Actor

logger = logging.getLogger("sluice.access.bootstrap")

PLATFORM_ORG_NAME = "Sluice platform"


async def _platform_org(session: AsyncSession) -> Organisation:
    org = await session.scalar(select(Organisation).where(Organisation.name == PLATFORM_ORG_NAME))
    if org is None:
        org = await identity.create_organisation(session, PLATFORM_ORG_NAME, ["operator"])
    return org


async def bootstrap_identity(
    sessionmaker: async_sessionmaker[AsyncSession], settings: AccessSettings
) -> None:
    try:
        async with sessionmaker() as session, session.begin():
            await serialise_startup(session)
            await _bootstrap(session, settings)
    except IntegrityError:
        # Another replica bootstrapped at the same moment; its result stands.
        logger.info("bootstrap raced with another replica; keeping theirs")


async def _bootstrap(session: AsyncSession, settings: AccessSettings) -> None:
    if await identity.count_clients(session) == 0:
        org = await _platform_org(session)
        given = settings.bootstrap_client_secret
        client_id = settings.bootstrap_client_id or "operator"
        issued = await identity.create_client(
            session, org.id, "bootstrap operator", ["operator"],
            client_id=client_id, secret=given.get_secret_value() if given else None,
        )
        await audit(session, "client.created", subject_type="client",
                    subject_id=issued.client.client_id, actor=Actor(sub="bootstrap"),
                    organisation_id=org.id, roles=issued.client.roles, bootstrap=True)
        if given is None:
            # Printed once, on the first start only: it is never stored in clear.
            print(
                "\n" + "=" * 72 + "\n"
                "Sluice access: created the first operator client (shown only once)\n"
                f"  client_id:     {issued.client.client_id}\n"
                f"  client_secret: {issued.secret}\n"
                "Get a token:\n"
                f"  curl -u {issued.client.client_id}:{issued.secret} "
                f"-d grant_type=client_credentials {settings.public_url}/oauth/token\n"
                + "=" * 72 + "\n",
                file=sys.stderr,
                flush=True,
            )
        else:
            logger.info("created bootstrap operator client %s", client_id)
    for client_id, secret in settings.bootstrap_service_clients.items():
        if await session.get(ApiClient, client_id) is None:
            org = await _platform_org(session)
            await identity.create_client(
                session, org.id, f"internal service {client_id}", ["service"],
                client_id=client_id, secret=secret.get_secret_value(),
            )
            await audit(session, "client.created", subject_type="client", subject_id=client_id,
                        actor=Actor(sub="bootstrap"), organisation_id=org.id, roles=["service"],
                        bootstrap=True)
            logger.info("created internal service client %s", client_id)
