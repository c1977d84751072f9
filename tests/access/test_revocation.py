"""RFC 7009 revocation, RFC 7662 introspection and the revocation feed."""

from __future__ import annotations

import time
from typing import Any

from jose import jwt

from services.access.runtime import AccessState
from tests.access.conftest import OPERATOR_ID, OPERATOR_SECRET, basic
from tests.access.entitlement_support import Deal, Market, deal_fixture, market_fixture, problem_type  # noqa: F401


async def introspect(m: Market, token: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = await m.client.post("/oauth/introspect", data={"token": token}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    return dict(resp.json())


async def test_buyer_revokes_its_token_and_the_feed_lists_the_jti(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    # Any client of the buyer organisation may revoke the organisation's tokens.
    buyer = await m.login(deal.buyer)
    resp = await m.client.post("/oauth/revoke", data={"token": issued["access_token"],
                                                      "token_type_hint": "access_token"},
                               headers=basic(buyer.client_id, buyer.secret))
    assert resp.status_code == 200
    items = (await m.feed())["items"]
    assert [(i["kind"], i["id"], i["entitlement_id"]) for i in items] == [
        ("token", issued["jti"], deal.ent["id"])]
    assert items[0]["expires_at"] is not None
    assert (await introspect(m, issued["access_token"], m.service)) == {"active": False}
    # Revoking twice changes nothing.
    await m.client.post("/oauth/revoke", data={"token": issued["access_token"]},
                        headers=basic(buyer.client_id, buyer.secret))
    assert len((await m.feed())["items"]) == 1


async def test_unknown_token_is_200_per_rfc7009(deal: Deal) -> None:
    resp = await deal.market.client.post("/oauth/revoke", data={"token": "not-a-token"},
                                         headers=basic(OPERATOR_ID, OPERATOR_SECRET))
    assert resp.status_code == 200
    assert (await deal.market.feed())["items"] == []


async def test_another_organisation_cannot_revoke_the_token(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    intruder = await m.party(["buyer"], with_client=True)
    resp = await m.client.post("/oauth/revoke", data={"token": issued["access_token"]},
                               headers=basic(intruder.client_id, intruder.secret))
    assert resp.status_code == 400
    assert resp.json()["error"] == "unauthorized_client"
    assert (await m.feed())["items"] == []
    assert (await introspect(m, issued["access_token"], m.service))["active"] is True
    # The control: the token's own organisation revoking it does put it in the feed.
    owner = await m.login(deal.buyer)
    await m.client.post("/oauth/revoke", data={"token": issued["access_token"]},
                        headers=basic(owner.client_id, owner.secret))
    assert [i["id"] for i in (await m.feed())["items"]] == [issued["jti"]]


async def test_revocation_needs_client_authentication(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    resp = await m.client.post("/oauth/revoke", data={"token": issued["access_token"]},
                               headers=basic(OPERATOR_ID, "wrong"))
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    resp = await m.client.post("/oauth/revoke", data={"token": issued["access_token"]})
    assert resp.status_code == 401


async def test_platform_tokens_are_an_unsupported_token_type(deal: Deal) -> None:
    resp = await deal.market.client.post("/oauth/revoke", data={"token": deal.market.operator_token},
                                         headers=basic(OPERATOR_ID, OPERATOR_SECRET))
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_token_type"


async def test_introspection_by_service_and_by_the_products_provider(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    for headers in (m.service, deal.provider.headers):
        answer = await introspect(m, issued["access_token"], headers)
        assert answer["active"] is True
        assert (answer["ent"], answer["scope"], answer["client_id"]) == (
            deal.ent["id"], "query", deal.buyer.client_id)
    other_provider = await m.party(["provider"])
    assert await introspect(m, issued["access_token"], other_provider.headers) == {"active": False}


async def test_buyers_cannot_introspect(deal: Deal) -> None:
    issued = await deal.market.token(deal.buyer, deal.ent["id"])
    resp = await deal.market.client.post("/oauth/introspect", data={"token": issued["access_token"]},
                                         headers=deal.buyer.headers)
    assert resp.status_code == 403
    assert problem_type(resp) == "forbidden"


async def test_introspection_turns_inactive_when_the_entitlement_is_suspended(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    await m.client.post(f"/v1/entitlements/{deal.ent['id']}/suspend", json={"reason": "x"},
                        headers=m.operator)
    assert await introspect(m, issued["access_token"], m.service) == {"active": False}


async def test_introspecting_garbage_or_a_forged_token_is_inactive(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    head, body, sig = issued["access_token"].split(".")
    forged = f"{head}.{body}.{sig[:-4]}AAAA"
    assert await introspect(m, forged, m.service) == {"active": False}
    assert await introspect(m, "garbage", m.service) == {"active": False}
    resp = await m.client.post("/oauth/introspect", data={}, headers=m.service)
    assert resp.status_code == 400


async def test_introspecting_a_token_with_a_future_iat_or_a_crit_header_is_inactive(deal: Deal) -> None:
    # Signed with access's own key, so only the changed property can make it inactive.
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    claims = jwt.get_unverified_claims(issued["access_token"])
    key = m.svc.state(AccessState).keys.active

    def resign(claims: dict[str, Any], **header: Any) -> str:
        token: str = jwt.encode(claims, key.signing, algorithm="RS256",
                                headers={"kid": key.kid, "typ": "at+jwt", **header})
        return token

    assert (await introspect(m, resign(claims), m.service))["active"] is True  # the control
    now = int(time.time())
    future = resign({**claims, "iat": now + 3600, "exp": now + 4000})
    assert await introspect(m, future, m.service) == {"active": False}
    crit = resign(claims, crit=["exp-policy"])
    assert await introspect(m, crit, m.service) == {"active": False}


async def test_feed_cursor_is_exact_and_stable(deal: Deal) -> None:
    m = deal.market
    first = await m.feed()
    assert first["items"] == [] and first["has_more"] is False
    cursor = first["next_cursor"]
    ents = [await m.grant(deal.buyer, deal.product_id) for _ in range(3)]
    for e in ents:
        await m.client.post(f"/v1/entitlements/{e['id']}/revoke", json={"reason": "r"},
                            headers=m.operator)
    page = await m.client.get("/v1/revocations", params={"since": cursor, "limit": 2},
                              headers=m.service)
    body = page.json()
    assert [i["id"] for i in body["items"]] == [ents[0]["id"], ents[1]["id"]]
    assert body["has_more"] is True
    rest = await m.feed(body["next_cursor"])
    assert [i["id"] for i in rest["items"]] == [ents[2]["id"]]
    idle = await m.feed(rest["next_cursor"])
    assert idle["items"] == [] and idle["next_cursor"] == rest["next_cursor"]


async def test_bad_cursor_is_a_400_problem(market: Market) -> None:
    resp = await market.client.get("/v1/revocations", params={"since": "abc"},
                                   headers=market.service)
    assert resp.status_code == 400
    assert problem_type(resp) == "invalid-cursor"


async def test_providers_see_only_their_products_in_the_feed(deal: Deal) -> None:
    m = deal.market
    other_provider = await m.party(["provider"])
    other_product = m.catalog.add_product(other_provider.org_id)
    theirs = await m.grant(deal.buyer, other_product)
    for e in (deal.ent, theirs):
        await m.client.post(f"/v1/entitlements/{e['id']}/revoke", json={"reason": "r"},
                            headers=m.operator)
    mine = await m.feed(headers=deal.provider.headers)
    assert [i["id"] for i in mine["items"]] == [deal.ent["id"]]
    assert [i["id"] for i in (await m.feed(headers=other_provider.headers))["items"]] == [theirs["id"]]
    buyer = await m.client.get("/v1/revocations", headers=deal.buyer.headers)
    assert buyer.status_code == 403


async def test_feed_polled_during_concurrent_revocations_misses_nothing(deal: Deal) -> None:
    import asyncio

    m = deal.market
    ents = [await m.grant(deal.buyer, deal.product_id) for _ in range(12)]
    seen: list[str] = []  # "id:event" of each entry polled
    writes = len(ents) + 1
    answered = 0  # writes answered so far
    partial_polls = 0  # polls that found entries while some writes were still unanswered
    done = asyncio.Event()

    async def poll() -> None:
        nonlocal partial_polls
        cursor = None
        while True:
            finished = done.is_set()
            page = await m.feed(cursor)
            if page["items"] and answered < writes:
                partial_polls += 1
            seen.extend(f'{i["id"]}:{i["event"]}' for i in page["items"])
            cursor = page["next_cursor"]
            if finished and not page["items"]:
                return
            await asyncio.sleep(0)

    async def write(path: str, headers: dict[str, str]) -> None:
        nonlocal answered
        resp = await m.client.post(path, json={"reason": "r"}, headers=headers)
        assert resp.status_code == 200, resp.text
        answered += 1

    poller = asyncio.create_task(poll())
    await asyncio.gather(*(write(f"/v1/entitlements/{e['id']}/revoke", m.operator) for e in ents),
                         write(f"/v1/products/{deal.product_id}/suspend-entitlements", m.service))
    done.set()
    await poller
    everything = [f'{i["id"]}:{i["event"]}' for i in (await m.feed())["items"]]
    assert seen == everything  # every entry once, in order, none skipped
    assert {f'{e["id"]}:revoked' for e in ents} <= set(seen)
    # The polls really interleaved with the writes: some found entries before all were written.
    assert partial_polls >= 1, "every poll ran before or after the writes; nothing was tested"


async def test_an_entry_committed_after_a_later_one_is_not_skipped_by_a_poll_between(deal: Deal) -> None:
    """The feed's cursor is the entry id. Writer A takes an id and commits late; writer B
    starts after A, and a poll runs while A is still open: the poll must not move its cursor
    past A's id (PostgreSQL: B waits for A's feed lock; SQLite: for its write lock)."""
    import asyncio

    from services.access import revocation

    sessions = deal.market.svc.db.sessionmaker

    async def write_b() -> None:
        async with sessions() as b, b.begin():
            await revocation.add_entry(b, kind="entitlement", subject_id="ent_b", event="revoked",
                                       reason="quick")

    async with sessions() as a:
        async with a.begin():
            await revocation.add_entry(a, kind="entitlement", subject_id="ent_a", event="revoked",
                                       reason="slow")
            b = asyncio.create_task(write_b())
            await asyncio.sleep(0.3)  # B gets as far as it can while A is open
            first = await deal.market.feed()
        await b
    rest = await deal.market.feed(first["next_cursor"])
    polled = [i["id"] for i in first["items"] + rest["items"]]
    assert sorted(polled) == ["ent_a", "ent_b"], f"a poll between the commits skipped an entry: {polled}"
