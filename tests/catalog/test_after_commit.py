"""The catalog's side effects wait for the commit: a committed transition wakes the relays of
the destinations it wrote to and drops the product's cached public view; a rolled-back one does
neither (and the cache keeps serving what the database still says)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from services.catalog import views
from tests.catalog.conftest import Tokens, create_listed, spec
from tests.support import RunningApp


def count_wakes(catalog: RunningApp) -> Counter[str]:
    woken: Counter[str] = Counter()
    for destination in ("access", "audit"):
        catalog.app.state.db.relay_wakers.register(destination, lambda d=destination: woken.update([d]))
    return woken


async def cached_public_view(catalog: RunningApp, tokens: Tokens) -> str:
    pid = str((await create_listed(catalog, tokens.provider_a, spec()))["id"])
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).status_code == 200
    assert catalog.app.state.public_view_cache.get(pid) is not None
    return pid


async def test_a_committed_transition_wakes_the_relays_and_drops_the_cached_view(
        catalog: RunningApp, tokens: Tokens) -> None:
    pid = await cached_public_view(catalog, tokens)
    woken = count_wakes(catalog)
    resp = await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"},
                                     headers=tokens.regulator)
    assert resp.status_code == 200, resp.text
    assert woken == {"access": 1, "audit": 1}  # once per destination, however many rows
    assert catalog.app.state.public_view_cache.get(pid) is None


async def test_a_rolled_back_transition_wakes_nothing_and_keeps_the_cached_view(
        catalog: RunningApp, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = await cached_public_view(catalog, tokens)
    woken = count_wakes(catalog)

    def fails_after_the_change(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("failed after the suspension was written and the cache drop registered")

    monkeypatch.setattr(views, "version_view", fails_after_the_change)
    try:
        resp = await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"},
                                         headers=tokens.regulator)
        assert resp.status_code == 500
    except RuntimeError:
        pass  # the ASGI test transport re-raises what the app did not handle
    monkeypatch.undo()
    assert not woken
    assert catalog.app.state.public_view_cache.get(pid) is not None
    seen = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.operator)
    assert seen.json()["status"] == "listed"
