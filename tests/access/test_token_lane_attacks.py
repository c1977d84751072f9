"""Token attacks on ``POST /v1/entitlements/{id}/tokens``, which the data-token lane
(services/access/token_lane.py) answers before FastAPI routes it: every attack is refused
through the lane exactly as by the route, and writes nothing (tests/lane_attacks.py)."""

from __future__ import annotations

import httpx
import pytest

from services.access.runtime import AccessState
from services.access.token_lane import DataTokenLane
from tests.access.entitlement_support import Deal, deal_fixture, market_fixture  # noqa: F401
from tests.lane_attacks import (
    Headers,
    LaneSigner,
    LaneTarget,
    assert_every_attack_refused_alike,
    assert_malformed_headers_answered_alike,
    assert_replaced_authentication_obeyed,
    bearer,
)


@pytest.fixture
def signer(deal: Deal) -> LaneSigner:
    """Signs as /oauth/token does, for the deal's buyer (the entitlement's holder)."""
    svc = deal.market.svc
    key = svc.state(AccessState).keys.active
    buyer = deal.buyer
    return LaneSigner(kid=key.kid, private=key.signing, public_jwk=key.public_jwk,
                      issuer=svc.settings.token_issuer, audience=svc.settings.token_audience,
                      identity={"sub": buyer.client_id, "client_id": buyer.client_id,
                                "org": buyer.org_id, "roles": ["buyer"], "scope": "buyer"})


@pytest.fixture
def target(deal: Deal, monkeypatch: pytest.MonkeyPatch) -> LaneTarget:
    svc = deal.market.svc

    async def send(headers: Headers) -> httpx.Response:
        return await svc.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens", headers=headers)

    # A data token is no row: it is its audit event (the outbox), which LaneTarget reads.
    return LaneTarget(send, svc.db.sessionmaker, (), svc.runtime.verifier, DataTokenLane, monkeypatch)


async def test_the_lane_takes_and_issues_for_the_control_token(target: LaneTarget, signer: LaneSigner) -> None:
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims())))
    assert lane.resp.status_code == 201, lane.resp.text
    assert (lane.verified, route.verified) == (1, 1)  # the lane answered: the route never ran
    assert lane.comparable() == route.comparable()
    assert lane.events == [("access.data_token.issued", "success")]


async def test_every_attack_token_is_refused_by_the_lane_as_by_the_route(
        target: LaneTarget, signer: LaneSigner) -> None:
    await assert_every_attack_refused_alike(target, signer)


async def test_malformed_authorization_headers_are_answered_as_by_the_route(
        target: LaneTarget, signer: LaneSigner) -> None:
    await assert_malformed_headers_answered_alike(target, signer, accepted=201)



async def test_a_replaced_authentication_is_obeyed_by_the_lane(
        target: LaneTarget, deal: Deal, signer: LaneSigner) -> None:
    await assert_replaced_authentication_obeyed(target, deal.market.svc.app, signer)

@pytest.mark.parametrize(("identity", "status"), [
    ({"roles": ["provider"]}, 403),  # not a buyer: require_roles' 403
    ({"roles": []}, 403),
    ({"roles": ["operator"]}, 403),
    ({"org": "org_someone_else"}, 404),  # a buyer, not the holder: the entitlement's 404
    ({"org": None}, 404),
])
async def test_a_token_for_the_wrong_role_or_org_is_refused_as_by_the_route(
        target: LaneTarget, signer: LaneSigner, identity: dict[str, object], status: int) -> None:
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims(**identity))))
    assert lane.resp.status_code == status, lane.resp.text
    assert lane.resp.headers["content-type"] == "application/problem+json"
    assert lane.comparable() == route.comparable()
    # The route audits a refused issue (404), not a refused role (403); so does the lane.
    assert lane.events == ([("access.data_token.refused", "denied")] if status == 404 else [])
