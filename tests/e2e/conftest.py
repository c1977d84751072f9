from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.market import Market, open_market


@pytest.fixture(scope="module")
def cluster_backend() -> str:
    import os
    return "postgresql" if os.environ.get("SLUICE_TEST_POSTGRES_URL") else "sqlite"


@contextmanager
def started(c: Cluster) -> Iterator[Cluster]:
    """Start ``c``; stop it afterwards, whatever happens (its logs are printed if it fails)."""
    try:
        c.start()
        yield c
    except Exception:
        print(c.logs())
        raise
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_backend: str) -> Iterator[Cluster]:
    """All five services as real processes (PostgreSQL when configured, else SQLite)."""
    with started(Cluster(tmp_path_factory.mktemp("cluster"), backend=cluster_backend)) as c:
        yield c


@pytest.fixture(scope="module")
def market(cluster: Cluster) -> Market:
    """The demo's parties and its two listed products, on this module's cluster."""
    return open_market(cluster)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if call.when == "call" and call.excinfo is not None:
        funcargs = getattr(item, "funcargs", {})
        c = funcargs.get("cluster")
        if c is None and isinstance(funcargs.get("market"), Market):
            c = funcargs["market"].cluster
        if isinstance(c, Cluster):
            print("\n" + c.logs())


__all__ = ["Path"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytestmark in a conftest does not apply to the modules: mark them here so
    # `-m "not e2e"` skips the real-process suite.
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
