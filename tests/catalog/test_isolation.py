"""Tenant isolation: other providers and buyers never see (or touch) drafts; 404, not 403."""

from __future__ import annotations

from tests.catalog.conftest import ORG_A, Tokens, create, create_listed, spec
from tests.support import RunningApp


async def test_another_provider_cannot_read_a_draft(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec()))["id"]
    for path in (f"/v1/products/{pid}", f"/v1/products/{pid}/draft", f"/v1/products/{pid}/versions"):
        resp = await catalog.client.get(path, headers=tokens.provider_b)
        assert resp.status_code == 404, path
        assert resp.json()["type"].endswith("/product-not-found")
    # Same answer as for a product that does not exist at all: existence does not leak.
    missing = await catalog.client.get("/v1/products/prd_0000000000000000", headers=tokens.provider_b)
    assert missing.status_code == 404 and missing.json()["title"] == "Product not found"


async def test_another_provider_cannot_change_submit_or_retire_a_draft(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec()))["id"]
    put = await catalog.client.put(f"/v1/products/{pid}", json=spec(title="Hijacked"), headers=tokens.provider_b)
    submit = await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_b)
    retire = await catalog.client.post(f"/v1/products/{pid}/retire", json={}, headers=tokens.provider_b)
    assert [put.status_code, submit.status_code, retire.status_code] == [404, 404, 404]
    mine = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.provider_a)).json()
    assert (mine["title"], mine["status"]) == ("Weather station readings", "draft")


async def test_another_provider_cannot_edit_a_listed_product(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.provider_b)).status_code == 200
    put = await catalog.client.put(f"/v1/products/{pid}", json=spec(title="Hijacked"), headers=tokens.provider_b)
    assert put.status_code == 404


async def test_buyer_cannot_see_drafts(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec()))["id"]
    # The control: a listed product the same search matches (so an empty search proves nothing).
    listed = (await create_listed(catalog, tokens.provider_b, spec(slug="b-weather")))["id"]
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).status_code == 404
    search = await catalog.client.get("/v1/products", params={"q": "weather"}, headers=tokens.buyer)
    assert [p["id"] for p in search.json()["items"]] == [listed] and search.json()["total"] == 1
    drafts = await catalog.client.get("/v1/products", params={"status": "draft"}, headers=tokens.buyer)
    assert drafts.status_code == 403


async def test_buyer_sees_the_published_version_not_the_pending_draft(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    await catalog.client.put(f"/v1/products/{pid}", json=spec(title="Secret new title v2"), headers=tokens.provider_a)
    seen = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).json()
    assert seen["title"] == "Weather station readings" and seen["pending_draft"] is None
    assert (await catalog.client.get(f"/v1/products/{pid}/draft", headers=tokens.buyer)).status_code == 403
    owner = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.provider_a)).json()
    assert owner["pending_draft"] == "draft"
    draft = (await catalog.client.get(f"/v1/products/{pid}/draft", headers=tokens.provider_a)).json()
    assert (draft["title"], draft["version"]) == ("Secret new title v2", 2)
    hits = (await catalog.client.get("/v1/products", params={"q": "secret"}, headers=tokens.buyer)).json()
    assert hits["items"] == []
    # The control: once the draft is published, the same search finds it.
    await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    hits = (await catalog.client.get("/v1/products", params={"q": "secret"}, headers=tokens.buyer)).json()
    assert [p["id"] for p in hits["items"]] == [pid]


async def test_providers_list_only_their_own_drafts(catalog: RunningApp, tokens: Tokens) -> None:
    await create(catalog, tokens.provider_a, spec())
    await create(catalog, tokens.provider_b, spec(slug="b-weather"))
    mine = (await catalog.client.get("/v1/products", params={"status": "draft"}, headers=tokens.provider_a)).json()
    assert [p["provider_org"] for p in mine["items"]] == [ORG_A]
    theirs = await catalog.client.get("/v1/products", params={"status": "draft", "provider": "org_provider_b"},
                                      headers=tokens.provider_a)
    assert theirs.json()["items"] == []
    # The control: the same listing, asked by someone allowed to see B's drafts, is not empty.
    seen = await catalog.client.get("/v1/products", params={"status": "draft", "provider": "org_provider_b"},
                                    headers=tokens.provider_b)
    assert [p["slug"] for p in seen.json()["items"]] == ["b-weather"]


async def test_regulators_see_drafts_under_review(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec()))["id"]
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.regulator)).status_code == 200
    listing = (await catalog.client.get("/v1/products", params={"status": "draft"}, headers=tokens.regulator)).json()
    assert [p["id"] for p in listing["items"]] == [pid]


async def test_review_queue_is_for_regulators_only(catalog: RunningApp, tokens: Tokens) -> None:
    for headers in (tokens.provider_a, tokens.buyer):
        assert (await catalog.client.get("/v1/review-queue", headers=headers)).status_code == 403
    assert (await catalog.client.get("/v1/review-queue")).status_code == 401
