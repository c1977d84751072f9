"""Signing-key rotation with several access replicas (make cluster runs two): a key created on
one replica verifies on the others at once, the old key outlives every token signed with it
(also by replicas that have not seen the rotation yet), and the JWKS is never cached past the
moment a retiring key retires."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from services.access.keys import VERIFY_LEEWAY
from services.access.models import SigningKey
from services.access.runtime import AccessState
from shared.db import utcnow
from tests.access.conftest import OPERATOR_ID, OPERATOR_SECRET, bearer, get_token
from tests.conftest import DatabaseFactory
from tests.support import RunningApp, run_app


@pytest.fixture
async def replicas(database_url: DatabaseFactory) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    """Two access replicas on one database (each its own engine, key store and refresh loop)."""
    url = database_url("access")
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_app(
            "access", url, bootstrap_client_id=OPERATOR_ID, bootstrap_client_secret=OPERATOR_SECRET))
        second = await stack.enter_async_context(run_app("access", url))
        yield first, second


async def rotate(replica: RunningApp) -> str:
    token = await get_token(replica, OPERATOR_ID, OPERATOR_SECRET)
    resp = await replica.client.post("/v1/signing-keys/rotate", headers=bearer(token))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["kid"])


async def test_a_token_signed_with_a_key_another_replica_just_created_verifies_at_once(
        replicas: tuple[RunningApp, RunningApp]) -> None:
    first, second = replicas
    await rotate(first)
    fresh = await get_token(first, OPERATOR_ID, OPERATOR_SECRET)  # signed with the new key
    assert (await second.client.get("/v1/me", headers=bearer(fresh))).status_code == 200


async def test_every_replica_publishes_a_key_another_replica_just_created(
        replicas: tuple[RunningApp, RunningApp]) -> None:
    first, second = replicas
    new_kid = await rotate(first)
    kids = {k["kid"] for k in (await second.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert new_kid in kids


async def test_the_old_key_outlives_every_token_any_replica_may_still_sign_with_it(
        replicas: tuple[RunningApp, RunningApp]) -> None:
    first, _ = replicas
    settings = first.settings
    rotated_at = utcnow()
    await rotate(first)
    keys = first.state(AccessState).keys.describe()
    [retiring] = [k for k in keys if k["status"] == "retiring"]
    longest = max(settings.token_lifetime_seconds, settings.data_token_lifetime_seconds)
    # A replica that has not refreshed yet signs with the old key for up to one refresh interval.
    needed = timedelta(seconds=settings.key_refresh_seconds + longest) + VERIFY_LEEWAY
    assert retiring["retire_after"] - rotated_at >= needed


async def test_the_jwks_is_not_cached_past_the_moment_a_retiring_key_retires(
        replicas: tuple[RunningApp, RunningApp]) -> None:
    first, second = replicas
    await rotate(first)
    # As if most of the grace period had passed: 30 s left, under the JWKS's usual max-age (60 s)
    # and long enough that a loaded machine does not reach it before the check (5 s did once).
    soon = utcnow() + timedelta(seconds=30)
    async with first.db.sessionmaker() as session, session.begin():
        await session.execute(update(SigningKey).where(SigningKey.status == "retiring").values(retire_after=soon))
    await second.state(AccessState).keys.refresh()
    resp = await second.client.get("/.well-known/jwks.json")
    max_age = int(resp.headers["cache-control"].split("max-age=")[1])
    assert max_age <= 30


async def test_every_replica_lists_the_rotation_another_replica_just_made(
        replicas: tuple[RunningApp, RunningApp]) -> None:
    """The operator's listing answers from the database: behind a balancer it may reach a
    replica that has not refreshed since the rotation, and must still show the retiring key
    with its retire_after (not the old key as active)."""
    first, second = replicas
    old = first.state(AccessState).keys.describe()[0]["kid"]
    token = await get_token(first, OPERATOR_ID, OPERATOR_SECRET)  # signed by the old key: no refresh
    new = await rotate(first)
    page = (await second.client.get("/v1/signing-keys", headers=bearer(token))).json()
    assert page["next_cursor"] is None  # the list envelope of every list
    listed = {k["kid"]: k for k in page["items"]}
    assert listed[new]["status"] == "active"
    assert listed[old]["status"] == "retiring" and listed[old]["retire_after"] is not None
