"""The lane (services/orders/order_lane.py) answers ``POST /v1/orders`` and ``POST /v1/quotes``
before FastAPI's routing, for the plainest requests only, with the routes' own answers: the same
statuses, headers and bodies (problems included); anything else reaches the route as it
arrived."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.orders import order_lane
from tests.orders.conftest import Harness

#: Response fields that differ between two orders placed one after the other.
_VARYING = {"id", "quote_id", "created_at", "updated_at", "paid_at", "valid_from", "valid_until",
            "instance", "request_id", "order_id"}


def _comparable(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    return {"status": resp.status_code, "type": resp.headers.get("content-type"),
            "replayed": resp.headers.get("idempotent-replayed"),
            "body": {k: v for k, v in body.items() if k not in _VARYING} if isinstance(body, dict) else body}


class _Taken:
    """Counts the requests the lane answered itself."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = order_lane.OrderLane.respond

        async def counted(*args: Any) -> Any:
            self.count += 1
            return await real(*args)

        monkeypatch.setattr(order_lane.OrderLane, "respond", counted)


def _route_only(m: pytest.MonkeyPatch) -> None:
    m.setattr(order_lane, "_parse", lambda _model, _body: None)  # every request goes to the route


async def _post(orders: Harness, *, body: Any = None, content: bytes | None = None,
                headers: dict[str, str] | None = None, key: str | None = "fresh",
                params: dict[str, str] | None = None) -> httpx.Response:
    sent = {**(headers if headers is not None else orders.buyer())}
    if key is not None:
        sent["Idempotency-Key"] = str(uuid.uuid4()) if key == "fresh" else key
    if content is not None:
        sent.setdefault("Content-Type", "application/json")
        return await orders.client.post("/v1/orders", content=content, headers=sent, params=params)
    return await orders.client.post("/v1/orders", json=body, headers=sent, params=params)


async def test_the_lane_answers_a_plain_order_and_its_replay_as_the_route_does(
    orders: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lane_quote, route_quote = await orders.quote("plan_free"), await orders.quote("plan_free")
    taken = _Taken(monkeypatch)
    lane = await _post(orders, body={"quote_id": lane_quote["id"], "purpose": "research"}, key="lane-key")
    lane_again = await _post(orders, body={"quote_id": lane_quote["id"], "purpose": "research"},
                             key="lane-key")
    assert taken.count == 2
    with monkeypatch.context() as m:
        _route_only(m)
        route = await _post(orders, body={"quote_id": route_quote["id"], "purpose": "research"},
                            key="route-key")
        route_again = await _post(orders, body={"quote_id": route_quote["id"], "purpose": "research"},
                                  key="route-key")
    assert taken.count == 2
    assert lane.status_code == 201 and lane_again.status_code == 200, (lane.text, lane_again.text)
    assert _comparable(lane) == _comparable(route)
    assert _comparable(lane_again) == _comparable(route_again)
    assert lane_again.json()["id"] == lane.json()["id"]
    assert lane.headers.get("x-request-id") and route.headers.get("x-request-id")


async def test_the_lanes_refusals_are_the_routes(orders: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    used = await orders.placed("plan_free")
    other_org = await orders.quote("plan_free", buyer=orders.buyer("org_buyer_b"))
    fresh = await orders.quote("plan_free")
    taken = _Taken(monkeypatch)
    cases = [
        {"quote_id": "quo_000000000000000000000000", "purpose": "research"},  # no such quote: 404
        {"quote_id": other_org["id"], "purpose": "research"},  # another organisation's: 404
        {"quote_id": used["quote_id"], "purpose": "research"},  # used: 409
        {"quote_id": fresh["id"], "purpose": "gambling"},  # purpose: 422
    ]
    lane = [await _post(orders, body=body) for body in cases]
    assert taken.count == len(cases)
    with monkeypatch.context() as m:
        _route_only(m)
        route = [await _post(orders, body=body) for body in cases]
    assert [r.status_code for r in lane] == [404, 404, 409, 422]
    assert [_comparable(r) for r in lane] == [_comparable(r) for r in route]
    assert all(r.headers["content-type"] == "application/problem+json" for r in lane)


async def test_requests_the_lane_does_not_take_reach_the_route_as_sent(
    orders: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    quote = await orders.quote("plan_free")
    taken = _Taken(monkeypatch)
    body = {"quote_id": quote["id"], "purpose": "research"}
    answers = [
        (await _post(orders, body=body, key=None)).status_code,  # no Idempotency-Key: 400
        (await _post(orders, body=body, key="   ")).status_code,  # blank: 400
        (await _post(orders, body=body, key="k" * 256)).status_code,  # too long: 422
        (await _post(orders, body={**body, "extra": 1})).status_code,  # not the model: 422
        (await _post(orders, content=b'{"quote_id": ')).status_code,  # not JSON: 422
        (await _post(orders, content=b"[1]")).status_code,  # not an object: 422
        (await _post(orders, body=body, headers={})).status_code,  # no token: 401
        (await _post(orders, body=body, headers={"Authorization": "Bearer nope"})).status_code,  # 401
        (await _post(orders, body=body, headers=orders.provider())).status_code,  # not a buyer: 403
        (await _post(orders, body=body, params={"x": "1"})).status_code,  # a query parameter: 422
    ]
    assert answers == [400, 400, 422, 422, 422, 422, 401, 401, 403, 422]
    assert taken.count == 0
    # The quote is still unused: the route took the body as it arrived, and ordered nothing.
    placed = await _post(orders, content=f'{{"quote_id": "{quote["id"]}", "purpose": "research"}}'.encode())
    assert placed.status_code == 201, placed.text
    assert taken.count == 1


async def test_the_lane_answers_quotes_and_their_refusals_as_the_route_does(
    orders: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = _Taken(monkeypatch)
    product = {"product_id": orders.product["product_id"], "version": orders.product["version"]}
    cases = [
        {**product, "plan_id": "plan_free"},  # 201
        {**product, "plan_id": "plan_monthly", "periods": 2},  # 201
        {**product, "plan_id": "plan_nope"},  # no such plan: 422
        {**product, "plan_id": "plan_free", "offer_id": "off_000000000000000000000000"},  # 404
    ]

    async def ask(body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return await orders.client.post("/v1/quotes", json=body, headers=headers or orders.buyer())

    lane = [await ask(body) for body in cases]
    assert taken.count == len(cases)
    with monkeypatch.context() as m:
        _route_only(m)
        route = [await ask(body) for body in cases]
    assert taken.count == len(cases)
    varying = _VARYING | {"expires_at"}
    assert [r.status_code for r in lane] == [201, 201, 422, 404], [r.text for r in lane]
    assert [{k: v for k, v in _comparable(r).items() if k != "body"} for r in lane] == \
        [{k: v for k, v in _comparable(r).items() if k != "body"} for r in route]
    assert [{k: v for k, v in r.json().items() if k not in varying} for r in lane] == \
        [{k: v for k, v in r.json().items() if k not in varying} for r in route]
    # Not taken: another role, a query parameter, a body that is not the model.
    assert (await ask(cases[0], orders.provider())).status_code == 403
    assert (await orders.client.post("/v1/quotes?x=1", json=cases[0], headers=orders.buyer())).status_code == 422
    assert (await ask({**cases[0], "periods": 0})).status_code == 422
    assert taken.count == len(cases)
