"""Token attacks on ``GET /v1/products/{id}``, which the public product lane
(services/catalog/public_lane.py) answers before FastAPI routes it: every attack is refused
through the lane exactly as by the route, and writes nothing (tests/lane_attacks.py)."""

from __future__ import annotations

import httpx
import pytest

from services.catalog.public_lane import PublicProductLane
from tests.catalog.conftest import BUYER_ORG, ORG_A, ORG_B, Tokens, create, create_listed, spec
from tests.lane_attacks import (
    Headers,
    LaneSigner,
    LaneTarget,
    assert_every_attack_refused_alike,
    assert_malformed_headers_answered_alike,
    assert_replaced_authentication_obeyed,
    bearer,
)
from tests.support import RunningApp, TestKeys


@pytest.fixture
def signer(catalog: RunningApp, test_keys: TestKeys) -> LaneSigner:
    """Signs as the catalog tests' buyer tokens are signed (Tokens.buyer)."""
    return LaneSigner(kid=test_keys.kid, private=test_keys.private_pem.decode(),
                      public_jwk=test_keys.public_jwk, issuer=catalog.settings.token_issuer,
                      audience=catalog.settings.token_audience,
                      identity={"sub": "cli_buyer", "client_id": "cli_buyer", "org": BUYER_ORG,
                                "roles": ["buyer"], "scope": "buyer"})


def lane_target(catalog: RunningApp, monkeypatch: pytest.MonkeyPatch, product_id: str) -> LaneTarget:
    async def send(headers: Headers) -> httpx.Response:
        return await catalog.client.get(f"/v1/products/{product_id}", headers=headers)

    return LaneTarget(send, catalog.db.sessionmaker, (), catalog.runtime.verifier, PublicProductLane,
                      monkeypatch)


@pytest.fixture
async def target(catalog: RunningApp, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> LaneTarget:
    """A listed product's public read."""
    product = await create_listed(catalog, tokens.provider_a, spec())
    return lane_target(catalog, monkeypatch, product["id"])


async def test_the_lane_takes_and_answers_the_control_token(target: LaneTarget, signer: LaneSigner) -> None:
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims())))
    assert lane.resp.status_code == 200, lane.resp.text
    assert (lane.verified, route.verified) == (1, 1)  # the lane answered: the route never ran
    assert lane.comparable() == route.comparable()
    assert lane.resp.content == route.resp.content


async def test_every_attack_token_is_refused_by_the_lane_as_by_the_route(
        target: LaneTarget, signer: LaneSigner) -> None:
    await assert_every_attack_refused_alike(target, signer)


async def test_malformed_authorization_headers_are_answered_as_by_the_route(
        target: LaneTarget, signer: LaneSigner) -> None:
    await assert_malformed_headers_answered_alike(target, signer, accepted=200)


@pytest.mark.parametrize(("roles", "org", "status"), [
    (["buyer"], BUYER_ORG, 404),  # not the owner: a draft does not exist for it
    (["provider"], ORG_B, 404),  # another provider
    ([], None, 404),
    (["provider"], ORG_A, 200),  # the owner sees its draft (the route's owner view)
    (["regulator"], "org_regulator", 200),
])
async def test_a_draft_is_refused_to_others_as_by_the_route(
        catalog: RunningApp, tokens: Tokens, monkeypatch: pytest.MonkeyPatch, signer: LaneSigner,
        roles: list[str], org: str | None, status: int) -> None:
    draft = await create(catalog, tokens.provider_a, spec())
    target = lane_target(catalog, monkeypatch, draft["id"])
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims(roles=roles, org=org))))
    assert lane.resp.status_code == status, lane.resp.text
    assert (lane.verified, route.verified) == (2, 1)  # the lane declined: the route answered
    assert lane.comparable() == route.comparable()
    assert lane.resp.content == route.resp.content or status == 404  # a 404 names its request



async def test_a_replaced_authentication_is_obeyed_by_the_lane(
        target: LaneTarget, catalog: RunningApp, signer: LaneSigner) -> None:
    # The lane did not check app.dependency_overrides (the other lanes do): it served the
    # product to a token the replaced authentication refused.
    await assert_replaced_authentication_obeyed(target, catalog.app, signer)
