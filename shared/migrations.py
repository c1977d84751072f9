"""Alembic plumbing shared by every service's ``migrations/env.py``.

Each service keeps its own migration history under ``services/<name>/migrations``;
this module only removes the boilerplate (async engine, SQLite batch mode,
URL from the service's settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import ensure_sqlite_dir, is_sqlite
from shared.settings import ServiceSettings


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute, not an ini option, so '%' in passwords needs no escaping.
    cfg.attributes["database_url"] = database_url
    return cfg


def _outside_event_loop(fn: Callable[[], None]) -> None:
    """Alembic's env runs its own event loop; from inside a running loop
    (tests, a lifespan) run it on a worker thread instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn).result()


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    cfg = alembic_config(migrations_dir, database_url)
    _outside_event_loop(lambda: command.upgrade(cfg, revision))


def downgrade(migrations_dir: Path, database_url: str, revision: str = "base") -> None:
    cfg = alembic_config(migrations_dir, database_url)
    _outside_event_loop(lambda: command.downgrade(cfg, revision))


def _do_run(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str, metadata: MetaData) -> None:
    ensure_sqlite_dir(url)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_do_run, metadata)
            await conn.commit()
    finally:
        await engine.dispose()


def run_env(metadata: MetaData, settings_cls: type[ServiceSettings]) -> None:
    """Body of every service's ``env.py``."""
    config = context.config
    url = config.attributes.get("database_url") or settings_cls().database_url
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            render_as_batch=is_sqlite(url),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_async(url, metadata))
