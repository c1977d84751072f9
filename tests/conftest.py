from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    POSTGRES_URL,
    DatabaseTemplates,
    RunningApp,
    TestKeys,
    empty_pg_database,
    run_app,
)

# Apps read settings from the environment; keep the developer's out of tests.
for _name in list(os.environ):
    if _name.startswith("SLUICE_") and not _name.startswith("SLUICE_TEST_"):
        del os.environ[_name]


@pytest.fixture(scope="session")
def db_templates(tmp_path_factory: pytest.TempPathFactory) -> DatabaseTemplates:
    return DatabaseTemplates(tmp_path_factory.mktemp("db-templates"))


@pytest.fixture(scope="session")
def test_keys() -> TestKeys:
    return TestKeys.generate()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("set SLUICE_TEST_POSTGRES_URL to run the PostgreSQL variant")
    return str(request.param)


DatabaseFactory = Callable[[str], str]


@pytest.fixture
async def database_url(
    backend: str, db_templates: DatabaseTemplates, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    """``database_url("catalog")`` → a migrated, empty database for this test."""
    used: list[str] = []

    def make(service: str) -> str:
        if backend == "sqlite":
            return db_templates.fresh_sqlite(service, tmp_path)
        url = db_templates.pg_database(service)
        used.append(url)
        return url

    yield make
    for url in used:
        await empty_pg_database(url)


AppFactory = Callable[..., AbstractAsyncContextManager[RunningApp]]


@pytest.fixture
def service_app(database_url: DatabaseFactory, test_keys: TestKeys) -> AppFactory:
    """``async with service_app("catalog") as svc: await svc.client.get(...)``"""

    def start(service: str, **overrides: Any) -> AbstractAsyncContextManager[RunningApp]:
        return run_app(service, database_url(service), keys=test_keys, **overrides)

    return start


@pytest.fixture(scope="session")
def live_marketplace(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """All five services and localstripe as real processes, once per session, on SQLite
    (PostgreSQL e2e clusters use fixed database names, which this must not share).

    For tests that drive the marketplace from outside, as a user would: the guides
    (tests/docs/test_guides.py) and the CLI (tests/sluice)."""
    from tests.e2e.cluster import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("marketplace"), backend="sqlite")
    try:
        cluster.start()
        yield cluster
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
