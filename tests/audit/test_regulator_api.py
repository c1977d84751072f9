"""Regulator API: filters, pagination, export, statistics, roles; reads are audited."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.audit.conftest import bearer, make_event, post_events
from tests.support import RunningApp, TestKeys

SEED = [
    make_event(0, action="orders.order.paid", service="orders"),
    make_event(1, action="orders.order.refunded", service="orders", outcome="failure"),
    make_event(2, action="orders.quote.created", service="orders", actor={"sub": "cli_x", "org": "org_x", "role": "buyer"}),
    make_event(3, action="catalog.product.listed", service="catalog", subject={"type": "product", "id": "prd_1"},
               occurred_at="2026-11-25T12:00:00+00:00"),
    make_event(4, action="ordersx.thing.done", service="ordersx"),
    make_event(5, action="access.client.created", service="access", outcome="denied",
               occurred_at="2026-11-26T23:59:59.999999+00:00"),
]


@pytest.fixture
async def seeded(audit: RunningApp, service_headers) -> RunningApp:
    await post_events(audit, service_headers, SEED)
    return audit


async def search(svc: RunningApp, headers: dict[str, str], **params: Any) -> list[str]:
    resp = await svc.client.get("/v1/events", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return [e["event_id"] for e in resp.json()["items"] if e["service"] != "audit"]


def ids(*indexes: int) -> list[str]:
    return [SEED[i]["event_id"] for i in indexes]


FILTER_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({"action": "orders.order.paid"}, [0]),
    ({"action": "orders."}, [0, 1, 2]),
    ({"action": "orders.order."}, [0, 1]),
    ({"actor_org": "org_x"}, [2]),
    ({"actor_sub": "cli_x"}, [2]),
    ({"subject_type": "product", "subject_id": "prd_1"}, [3]),
    ({"service": "catalog"}, [3]),
    ({"outcome": "denied"}, [5]),
    ({"occurred_since": "2026-11-26T00:00:00Z", "occurred_until": "2026-11-27T00:00:00Z"}, [5]),
    ({"occurred_until": "2026-11-26T00:00:00Z"}, [3]),
    ({"action": "orders.", "outcome": "failure"}, [1]),
    ({"from_seq": 2, "to_seq": 4}, [2, 3]),
]


async def test_each_filter_narrows_the_search(seeded: RunningApp, regulator_headers) -> None:
    for params, expected in FILTER_CASES:
        assert await search(seeded, regulator_headers, **params) == ids(*expected), params


async def test_pagination_walks_every_event_once_in_log_order(seeded: RunningApp, regulator_headers) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "service": "orders", **({"cursor": cursor} if cursor else {})}
        page = (await seeded.client.get("/v1/events", params=params, headers=regulator_headers)).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [0, 1, 2]


BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"cursor": "%%%"}, "invalid-cursor"),
    ({"cursor": "eyJ4IjoxfQ"}, "invalid-cursor"),
    ({"occurred_since": "2026-11-28T00:00:00Z", "occurred_until": "2026-11-27T00:00:00Z"}, "invalid-range"),
    ({"occurred_since": "2026-11-28T00:00:00"}, "naive-datetime"),
    ({"action": "Orders!"}, "validation-error"),
    ({"outcome": "maybe"}, "validation-error"),
]


async def test_bad_queries_are_problems(seeded: RunningApp, regulator_headers) -> None:
    for params, problem in BAD_QUERIES:
        resp = await seeded.client.get("/v1/events", params=params, headers=regulator_headers)
        assert resp.status_code in (400, 422), params
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("/" + problem), params


async def test_operator_may_read_but_other_roles_may_not(seeded: RunningApp, test_keys: TestKeys) -> None:
    for path in ("/v1/events", "/v1/events/0", "/v1/events/export", "/v1/stats"):
        assert (await seeded.client.get(path)).status_code == 401
        for role in ("service", "buyer", "provider"):
            resp = await seeded.client.get(path, headers=bearer(test_keys.token(roles=[role])))
            assert resp.status_code == 403, (path, role)
        resp = await seeded.client.get(path, headers=bearer(test_keys.token(roles=["operator"])))
        assert resp.status_code == 200, path


async def test_unknown_event_is_404(seeded: RunningApp, regulator_headers) -> None:
    resp = await seeded.client.get("/v1/events/999", headers=regulator_headers)
    assert resp.status_code == 404
    assert "GET /v1/events" in resp.json()["detail"]


async def test_export_streams_ndjson_for_a_filter(service_app, service_headers, regulator_headers) -> None:
    async with service_app("audit", export_chunk_rows=7) as svc:  # several chunks
        for k in range(5):
            await post_events(svc, service_headers, [make_event(10 * k + i) for i in range(10)])
        await post_events(svc, service_headers, [make_event(99, action="catalog.product.listed")])
        resp = await svc.client.get("/v1/events/export", params={"action": "orders."}, headers=regulator_headers)
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        rows = [json.loads(line) for line in resp.text.splitlines()]
        assert [r["seq"] for r in rows] == list(range(50))
        assert all(r["action"] == "orders.order.paid" for r in rows)


async def test_stats_count_by_action_and_day(seeded: RunningApp, regulator_headers) -> None:
    body = (await seeded.client.get("/v1/stats", params={"to_seq": 6}, headers=regulator_headers)).json()
    assert body["total"] == 6
    assert {a["action"]: a["count"] for a in body["by_action"]}["orders.order.paid"] == 1
    assert body["by_day"] == [{"day": "2026-11-25", "count": 1}, {"day": "2026-11-26", "count": 1},
                              {"day": "2026-11-27", "count": 4}]


async def test_every_regulator_read_is_itself_audited(seeded: RunningApp, test_keys: TestKeys) -> None:
    reg = bearer(test_keys.token(roles=["regulator"], org="org_reg", sub="cli_reg"))
    await seeded.client.get("/v1/events", params={"action": "orders."}, headers=reg)
    await seeded.client.get("/v1/events/2", headers=reg)
    await seeded.client.get("/v1/events/export", params={"service": "catalog"}, headers=reg)
    await seeded.client.get("/v1/stats", headers=reg)
    await seeded.client.get("/v1/events", headers=bearer(test_keys.token(roles=["operator"], org="org_op", sub="cli_op")))
    page = (await seeded.client.get("/v1/events", params={"service": "audit"}, headers=reg)).json()
    got = [(e["action"], e["actor"], e["subject"]["id"], e["details"]) for e in page["items"]]
    assert got[:5] == [
        ("audit.events.listed", {"sub": "cli_reg", "org": "org_reg", "role": "regulator"}, "events",
         {"filter": {"action": "orders."}, "cursor": None, "limit": 50, "tree_size": 6}),
        ("audit.event.read", {"sub": "cli_reg", "org": "org_reg", "role": "regulator"}, "2", {"seq": 2}),
        ("audit.events.exported", {"sub": "cli_reg", "org": "org_reg", "role": "regulator"}, "events",
         {"filter": {"service": "catalog"}}),
        ("audit.stats.read", {"sub": "cli_reg", "org": "org_reg", "role": "regulator"}, "stats", {"filter": {}}),
        ("audit.events.listed", {"sub": "cli_op", "org": "org_op", "role": "operator"}, "events",
         {"filter": {}, "cursor": None, "limit": 50, "tree_size": 10}),
    ]
    # The listing that returned these was itself recorded before it ran (at the log's size it
    # read, so not in its own answer: a new listing shows it).
    assert len(got) == 5 and page["tree_size"] == 11
    later = (await seeded.client.get("/v1/events", params={"service": "audit", "from_seq": 11},
                                     headers=reg)).json()["items"]
    assert later[0]["action"] == "audit.events.listed" and later[0]["details"]["filter"] == {"service": "audit"}
    assert later[0]["details"]["tree_size"] == 11


async def test_paging_the_whole_log_with_limit_1_ends_at_the_size_it_started_from(
    seeded: RunningApp, regulator_headers
) -> None:
    """Each page's read is itself appended to the log; a listing that followed the growing log
    would never end. It stops at the tree size of its first page, and says which."""
    start = (await seeded.client.get("/v1/events", params={"limit": 1}, headers=regulator_headers)).json()
    bound = start["tree_size"]
    seen, cursor, pages = [e["seq"] for e in start["items"]], start["next_cursor"], 1
    while cursor:
        page = (await seeded.client.get("/v1/events", params={"limit": 1, "cursor": cursor},
                                        headers=regulator_headers)).json()
        assert page["tree_size"] == bound  # the same bound on every page
        seen += [e["seq"] for e in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
        assert pages <= bound + 1, "the listing follows its own reads and never ends"
    assert seen == list(range(bound))
    # The reads were appended meanwhile: a new listing sees them.
    again = (await seeded.client.get("/v1/events", params={"limit": 1}, headers=regulator_headers)).json()
    assert again["tree_size"] >= bound + pages
