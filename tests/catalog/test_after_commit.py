"""The catalog's side effects wait for the commit: a committed transition wakes the relays of
the destinations it wrote to and drops the product's cached public view; a rolled-back one does
neither (and the cache keeps serving what the database still says)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from services.catalog import published, views
from services.catalog.cache import PublicViewCache
from services.catalog.runtime import CatalogState
from tests.catalog.conftest import Tokens, create_listed, spec
from tests.support import RunningApp


def count_wakes(catalog: RunningApp) -> Counter[str]:
    woken: Counter[str] = Counter()
    for destination in ("access", "audit"):
        catalog.db.relay_wakers.register(destination, lambda d=destination: woken.update([d]))
    return woken


async def cached_public_view(catalog: RunningApp, tokens: Tokens) -> str:
    pid = str((await create_listed(catalog, tokens.provider_a, spec()))["id"])
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).status_code == 200
    assert catalog.state(CatalogState).public_views.get(pid) is not None
    return pid


async def test_a_committed_transition_wakes_the_relays_and_drops_the_cached_view(
        catalog: RunningApp, tokens: Tokens) -> None:
    pid = await cached_public_view(catalog, tokens)
    woken = count_wakes(catalog)
    resp = await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"},
                                     headers=tokens.regulator)
    assert resp.status_code == 200, resp.text
    assert woken == {"access": 1, "audit": 1}  # once per destination, however many rows
    assert catalog.state(CatalogState).public_views.get(pid) is None


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
    assert catalog.state(CatalogState).public_views.get(pid) is not None
    seen = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.operator)
    assert seen.json()["status"] == "listed"


async def test_a_read_that_loaded_the_view_before_a_commit_cannot_cache_it_after_the_invalidation(
        catalog: RunningApp, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker's interleaving: a public read loads the listed view, a suspension commits
    and drops the cached view, then the read stores what it loaded. Without a generation check
    the cache would serve the listed view of a suspended product for the whole TTL."""
    pid = str((await create_listed(catalog, tokens.provider_a, spec()))["id"])
    loaded, release = asyncio.Event(), asyncio.Event()
    read_public_json = published.public_json

    async def slow_public_json(*args: Any, **kwargs: Any) -> tuple[str, bytes] | None:
        found = await read_public_json(*args, **kwargs)
        loaded.set()
        await release.wait()  # the suspension commits while this read holds the old view
        return found

    monkeypatch.setattr(published, "public_json", slow_public_json)
    read = asyncio.create_task(catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer))
    await loaded.wait()
    monkeypatch.undo()
    resp = await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"},
                                     headers=tokens.regulator)
    assert resp.status_code == 200, resp.text
    release.set()
    assert (await read).json()["status"] == "listed"  # it answered with what it read: fine
    cached = catalog.state(CatalogState).public_views.get(pid)
    assert cached is None or json.loads(cached[1])["status"] != "listed"
    after = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)
    assert after.status_code != 200 or after.json()["status"] != "listed"


def test_a_fill_older_than_a_forgotten_invalidation_is_not_stored() -> None:
    """Only the newest ``max_entries`` invalidations are remembered per product; a fill that
    started before one that was forgotten is dropped (the safe side), a newer one is kept."""
    cache = PublicViewCache(ttl=60, max_entries=2)
    old = cache.ticket()
    for pid in ("prd_a", "prd_b", "prd_c"):  # prd_a's invalidation is forgotten
        cache.invalidate(pid)
    cache.put("prd_a", "org", b"old", ticket=old)
    assert cache.get("prd_a") is None
    cache.put("prd_a", "org", b"new", ticket=cache.ticket())
    assert cache.get("prd_a") == ("org", b"new")
