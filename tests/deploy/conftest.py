from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, Doc, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    """Every overlay rendered once per test session."""
    return {name: render(path) for name, path in OVERLAYS.items()}


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> tuple[str, list[Doc]]:
    """(name, documents) of each overlay in turn: base and production."""
    return request.param, rendered[request.param]
