"""The free-order hot path (services/orders/free_checkout.py) keeps the general path's
guarantees: one order per Idempotency-Key, one order per quote, the same rows, events and
grant command, all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update

from services.orders import free_checkout
from services.orders.models import Order, Quote
from shared.outbox import outbox
from tests.orders.conftest import Harness


async def _messages(orders: Harness, order_id: str) -> list[dict[str, Any]]:
    """The order's outbox rows, in id order: (kind, destination, what)."""
    async with orders.ctx.sessionmaker() as s:
        rows = (await s.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    out = []
    for r in rows:
        payload = r["payload"]
        subject = (payload.get("subject") or {}).get("id") or payload.get("order_id")
        if subject == order_id:
            out.append({"kind": r["kind"], "destination": r["destination"],
                        "what": payload.get("action") or r["message_id"].split(":")[0],
                        "details": payload.get("details"), "actor": payload.get("actor")})
    return out


async def test_concurrent_requests_with_the_same_key_make_one_free_order(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    responses = await asyncio.gather(*(orders.order(quote["id"], key="same-free-key") for _ in range(12)))
    assert sorted(r.status_code for r in responses) == [200] * 11 + [201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    async with orders.ctx.sessionmaker() as s:
        assert len((await s.execute(select(Order))).scalars().all()) == 1
    order_id = ids.pop()
    whats = [m["what"] for m in await _messages(orders, order_id)]
    assert whats[:3] == ["orders.order.created", "grant", "orders.order.paid"]
    assert whats.count("grant") == 1 and whats.count("orders.order.created") == 1


async def test_concurrent_orders_of_one_quote_with_different_keys_make_one_order(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    responses = await asyncio.gather(*(orders.order(quote["id"], key=f"k{i}") for i in range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7, [r.text for r in responses]
    assert all(r.json()["type"].endswith("quote-used") for r in responses if r.status_code == 409)
    async with orders.ctx.sessionmaker() as s:
        placed = (await s.execute(select(Order))).scalars().all()
        used = await s.get(Quote, quote["id"])
        grants = (await s.execute(select(outbox.c.message_id).where(outbox.c.kind == "grant_entitlement"))
                  ).scalars().all()
    assert len(placed) == 1 and used is not None and used.order_id == placed[0].id
    assert grants == [f"grant:{placed[0].id}"]  # the losers wrote nothing


async def test_the_hot_path_writes_what_the_general_path_writes(orders: Harness,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert free_checkout.available(orders.ctx.sessionmaker)  # the app's sessionmaker has a hot pool
    fast = (await orders.order((await orders.quote("plan_free"))["id"])).json()
    monkeypatch.setattr(free_checkout, "available", lambda _sm: False)
    general = (await orders.order((await orders.quote("plan_free"))["id"])).json()
    varying = {"id", "quote_id", "created_at", "updated_at", "paid_at", "valid_from", "valid_until"}
    assert {k: v for k, v in fast.items() if k not in varying} == \
        {k: v for k, v in general.items() if k not in varying}
    await orders.delivered()  # both fulfilled: the relay has moved them on alike
    async with orders.ctx.sessionmaker() as s:
        rows = {o.id: o for o in (await s.execute(select(Order))).scalars().all()}
    columns = [c.key for c in Order.__table__.columns
               if c.key not in varying | {"idempotency_key", "request_hash", "entitlement_id", "fulfilled_at"}]
    assert rows[fast["id"]].status == rows[general["id"]].status == "fulfilled"
    a, b = rows[fast["id"]], rows[general["id"]]
    assert {c: getattr(a, c) for c in columns} == {c: getattr(b, c) for c in columns}
    assert a.valid_until - a.valid_from == b.valid_until - b.valid_from  # type: ignore[operator]

    def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keep = []
        for m in messages[:3]:  # the fulfilment's messages come later, whenever it runs
            details = {k: v for k, v in (m["details"] or {}).items() if k != "quote_id"}
            keep.append({**m, "details": details})
        return keep

    assert comparable(await _messages(orders, fast["id"])) == comparable(await _messages(orders, general["id"]))


async def test_a_quote_used_between_the_read_and_the_write_leaves_nothing_written(
    orders: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    quote = await orders.quote("plan_free")
    async with orders.ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Quote).where(Quote.id == quote["id"]).values(order_id="ord_elsewhere"))
    real_read = free_checkout.read_quote_and_key

    async def read_before_it_was_used(*args: Any) -> Any:
        found, existing = await real_read(*args)
        assert found is not None
        found.order_id = None  # as the read saw it, a moment before the other order used it
        return found, existing

    monkeypatch.setattr(free_checkout, "read_quote_and_key", read_before_it_was_used)
    resp = await orders.order(quote["id"])
    assert resp.status_code == 409 and resp.json()["type"].endswith("quote-used"), resp.text
    async with orders.ctx.sessionmaker() as s:
        assert (await s.execute(select(Order))).scalars().all() == []
        assert (await s.execute(select(outbox.c.id))).all() == []
        still = await s.get(Quote, quote["id"])
    assert still is not None and still.order_id == "ord_elsewhere"


@pytest.mark.parametrize("plan_id", ["plan_free", "plan_monthly"])
async def test_a_quote_written_as_one_insert_equals_the_general_paths(
    orders: Harness, monkeypatch: pytest.MonkeyPatch, plan_id: str,
) -> None:
    fast = await orders.quote(plan_id)
    monkeypatch.setattr(free_checkout, "available", lambda _sm: False)
    general = await orders.quote(plan_id)
    varying = {"id", "created_at", "expires_at"}
    assert {k: v for k, v in fast.items() if k not in varying} == \
        {k: v for k, v in general.items() if k not in varying}
    async with orders.ctx.sessionmaker() as s:
        a, b = await s.get(Quote, fast["id"]), await s.get(Quote, general["id"])
    assert a is not None and b is not None
    columns = [c.key for c in Quote.__table__.columns if c.key not in varying]
    assert {c: getattr(a, c) for c in columns} == {c: getattr(b, c) for c in columns}
    assert a.expires_at - a.created_at == b.expires_at - b.created_at
    monkeypatch.undo()
    if plan_id == "plan_free":  # the quote written as one INSERT is ordered as any other
        assert (await orders.order(fast["id"])).status_code == 201
