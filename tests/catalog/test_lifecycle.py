"""Lifecycle: drafts, submission, regulator review, suspension, retirement, audit events."""

from __future__ import annotations

from tests.catalog.conftest import Tokens, audit_actions, create, create_listed, l3_spec, spec
from tests.support import RunningApp


async def test_submitting_an_l1_product_lists_it_as_version_1(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, spec())
    assert (product["status"], product["version"], product["version_state"]) == ("draft", 1, "draft")
    resp = await catalog.client.post(f"/v1/products/{product['id']}/submit", headers=tokens.provider_a)
    body = resp.json()
    assert resp.status_code == 200
    assert (body["status"], body["latest_version"], body["version_state"]) == ("listed", 1, "published")
    assert body["listed_at"] is not None
    buyer_view = (await catalog.client.get(f"/v1/products/{product['id']}", headers=tokens.buyer)).json()
    assert buyer_view["title"] == "Weather station readings"
    assert buyer_view["guardrails"] == {"max_rows": 1000, "min_group_size": 1, "epsilon_budget": None}


async def test_full_l3_lifecycle_with_regulator_approval(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, l3_spec())
    pid = product["id"]
    submitted = (await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)).json()
    assert submitted["status"] == "in_review" and submitted["version_state"] == "in_review"

    # Under review: the provider cannot change it, the buyer cannot see it.
    edit = await catalog.client.put(f"/v1/products/{pid}", json=l3_spec(title="Changed title"),
                                    headers=tokens.provider_a)
    assert edit.status_code == 409 and edit.json()["type"].endswith("/under-review")
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).status_code == 404

    queue = (await catalog.client.get("/v1/review-queue", headers=tokens.regulator)).json()
    assert [i["product_id"] for i in queue["items"]] == [pid]
    assert queue["items"][0]["grade"] == "L3_sensitive"

    no_note = await catalog.client.post(f"/v1/products/{pid}/approve", json={}, headers=tokens.regulator)
    assert no_note.status_code == 422
    approved = await catalog.client.post(f"/v1/products/{pid}/approve",
                                         json={"note": "Attestation verified, k=10."},
                                         headers=tokens.regulator)
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["latest_version"]) == ("listed", 1)
    assert approved.json()["guardrails"] == {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0}

    seen = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).json()
    assert seen["status"] == "listed" and seen["pending_draft"] is None
    assert (await catalog.client.get("/v1/review-queue", headers=tokens.regulator)).json()["items"] == []

    suspended = await catalog.client.post(f"/v1/products/{pid}/suspend",
                                          json={"reason": "Complaint under investigation"},
                                          headers=tokens.regulator)
    assert suspended.json()["status"] == "suspended"
    reinstated = await catalog.client.post(f"/v1/products/{pid}/reinstate",
                                           json={"reason": "Complaint unfounded"}, headers=tokens.operator)
    assert reinstated.json()["status"] == "listed"
    retired = await catalog.client.post(f"/v1/products/{pid}/retire", json={"reason": "Superseded"},
                                        headers=tokens.provider_a)
    assert retired.json()["status"] == "retired"

    actions = await audit_actions(catalog, pid)
    assert [a for a, _ in actions] == [
        "catalog.product.created", "catalog.product.submitted", "catalog.product.approved",
        "catalog.product.listed", "catalog.product.suspended", "catalog.product.reinstated",
        "catalog.product.retired",
    ]
    details = dict(actions)
    assert details["catalog.product.approved"] == {"version": 1, "note": "Attestation verified, k=10."}
    assert details["catalog.product.suspended"]["reason"] == "Complaint under investigation"


async def test_audit_events_name_who_acted(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create_listed(catalog, tokens.provider_a, spec())
    from sqlalchemy import select

    from shared.outbox import outbox
    async with catalog.db.sessionmaker() as s:
        payloads = (await s.execute(select(outbox.c.payload)
                                    .where(outbox.c.kind == "audit_event"))).scalars().all()
    listed = next(p for p in payloads if p["action"] == "catalog.product.listed")
    assert listed["actor"] == {"sub": "cli_prov_a", "org": "org_provider_a", "role": "provider"}
    assert listed["subject"] == {"type": "product", "id": product["id"]}
    assert listed["service"] == "catalog"


async def test_regulator_rejection_returns_the_draft_with_its_reason(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, l3_spec()))["id"]
    await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    resp = await catalog.client.post(f"/v1/products/{pid}/reject", json={"reason": "k too low for this area"},
                                     headers=tokens.regulator)
    assert resp.status_code == 200
    mine = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.provider_a)).json()
    assert (mine["status"], mine["status_reason"], mine["version_state"]) == ("draft", "k too low for this area", "draft")
    # The provider can fix it and submit again.
    fixed = await catalog.client.put(f"/v1/products/{pid}", json=l3_spec(
        deidentification={**l3_spec()["deidentification"], "k": 20}), headers=tokens.provider_a)
    assert fixed.status_code == 200
    again = await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    assert again.json()["status"] == "in_review"
    assert ("catalog.product.rejected", {"version": 1, "reason": "k too low for this area"}) in await audit_actions(catalog, pid)


async def test_only_regulators_approve_not_operators_or_providers(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, l3_spec()))["id"]
    await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    for headers in (tokens.operator, tokens.provider_a):
        resp = await catalog.client.post(f"/v1/products/{pid}/approve", json={"note": "looks fine"}, headers=headers)
        assert resp.status_code == 403
        assert resp.json()["required_roles"] == ["regulator"]


async def test_approving_a_product_not_in_review_is_a_conflict(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec()))["id"]
    resp = await catalog.client.post(f"/v1/products/{pid}/approve", json={"note": "why not"}, headers=tokens.regulator)
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/not-in-review")


async def test_suspended_products_leave_search_and_reinstating_needs_suspension(
    catalog: RunningApp, tokens: Tokens
) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    bad = await catalog.client.post(f"/v1/products/{pid}/reinstate", json={"reason": "nothing to do"},
                                    headers=tokens.regulator)
    assert bad.status_code == 409 and bad.json()["status_now"] == "listed"
    before = (await catalog.client.get("/v1/products", params={"q": "weather"}, headers=tokens.buyer)).json()
    assert [p["id"] for p in before["items"]] == [pid]  # the control: found while listed
    await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"},
                              headers=tokens.regulator)
    hits = (await catalog.client.get("/v1/products", params={"q": "weather"}, headers=tokens.buyer)).json()
    assert hits["items"] == []
    forbidden = await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "my own"},
                                          headers=tokens.provider_a)
    assert forbidden.status_code == 403


async def test_retired_products_cannot_be_edited(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    await catalog.client.post(f"/v1/products/{pid}/retire", json={}, headers=tokens.provider_a)
    resp = await catalog.client.put(f"/v1/products/{pid}", json=spec(), headers=tokens.provider_a)
    assert resp.status_code == 409 and resp.json()["type"].endswith("/product-retired")
    again = await catalog.client.post(f"/v1/products/{pid}/retire", json={}, headers=tokens.provider_a)
    assert again.status_code == 409


async def test_duplicate_slug_within_an_organisation_is_409(catalog: RunningApp, tokens: Tokens) -> None:
    await create(catalog, tokens.provider_a, spec())
    resp = await catalog.client.post("/v1/products", json=spec(), headers=tokens.provider_a)
    assert resp.status_code == 409 and resp.json()["type"].endswith("/slug-taken")
    # Another organisation may use the same slug.
    assert (await catalog.client.post("/v1/products", json=spec(), headers=tokens.provider_b)).status_code == 201


async def test_buyers_cannot_create_products(catalog: RunningApp, tokens: Tokens) -> None:
    resp = await catalog.client.post("/v1/products", json=spec(), headers=tokens.buyer)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"


async def test_submitting_without_plans_names_the_rule(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec(plans=[])))["id"]
    resp = await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    assert resp.status_code == 422 and resp.json()["rule"] == "plans-required"


async def test_suspension_shows_at_once_even_after_the_product_was_read(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).json()["status"] == "listed"
    await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"}, headers=tokens.regulator)
    seen = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).json()
    assert seen["status"] == "suspended"


async def test_suspension_and_reinstatement_are_sent_to_access_through_the_outbox(
    catalog: RunningApp, tokens: Tokens
) -> None:
    from sqlalchemy import select

    from shared.outbox import outbox

    product = await create_listed(catalog, tokens.provider_a, spec())
    for action in ("suspend", "reinstate"):
        resp = await catalog.client.post(f"/v1/products/{product['id']}/{action}",
                                         json={"reason": "licence check"}, headers=tokens.regulator)
        assert resp.status_code == 200, resp.text
    async with catalog.db.sessionmaker() as s:
        rows = (await s.execute(select(outbox.c.destination, outbox.c.payload)
                                .where(outbox.c.kind == "http_command").order_by(outbox.c.id))).all()
    assert [(d, p["path"]) for d, p in rows] == [
        ("access", f"/v1/products/{product['id']}/suspend-entitlements"),
        ("access", f"/v1/products/{product['id']}/reinstate-entitlements"),
    ]
    assert rows[0][1]["body"] == {"reason": "licence check"}
