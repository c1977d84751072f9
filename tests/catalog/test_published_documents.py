"""GET /v1/products/{id} for the public serves the stored document of the published version
(services/catalog/published.py): it must be exactly what the general path renders, and the
product's state in it must be current."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from services.catalog import published, views
from services.catalog.models import Product, ProductVersion
from services.catalog.schemas import ProductView
from shared.auth import Principal
from tests.catalog.conftest import BUYER_ORG, Tokens, create_listed, spec
from tests.conftest import AppFactory
from tests.support import RunningApp


@pytest.fixture
async def uncached(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    """The catalog without its public-view cache: every GET reads the database."""
    async with service_app("catalog", public_url="https://catalog.example", public_view_cache_seconds=0) as svc:
        yield svc


async def _rows(svc: RunningApp, product_id: str) -> tuple[Product, ProductVersion]:
    async with svc.db.sessionmaker() as s:
        product = (await s.execute(select(Product).where(Product.id == product_id))).scalar_one()
        version = await s.get(ProductVersion, (product_id, product.latest_version))
        assert version is not None
        return product, version


async def test_the_stored_public_view_is_byte_for_byte_the_rendered_view(uncached: RunningApp,
                                                                        tokens: Tokens) -> None:
    product_id = (await create_listed(uncached, tokens.provider_a, spec(title="Grüße — données ✓")))["id"]
    resp = await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)
    assert resp.status_code == 200
    product, version = await _rows(uncached, product_id)
    rendered = ProductView.model_validate(views.version_view(product, version, show_draft_state=False))
    assert resp.content == rendered.model_dump_json(by_alias=True).encode()
    buyer = Principal("cli_buyer", "cli_buyer", BUYER_ORG, frozenset({"buyer"}), None, {})
    assert await published.public_json(uncached.db, buyer, product_id) == (
        product.provider_org, resp.content)  # served from the stored document


async def test_the_public_view_shows_a_suspension_at_once(uncached: RunningApp, tokens: Tokens) -> None:
    product_id = (await create_listed(uncached, tokens.provider_a, spec()))["id"]
    assert (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)).json()["status"] == "listed"
    resp = await uncached.client.post(f"/v1/products/{product_id}/suspend", headers=tokens.regulator,
                                      json={"reason": "Attestation under investigation."})
    assert resp.status_code == 200, resp.text
    after = (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)).json()
    assert after["status"] == "suspended"
    assert after["status_reason"] is None  # reasons are for the owner and regulators


async def test_the_owner_still_sees_its_pending_draft(uncached: RunningApp, tokens: Tokens) -> None:
    product_id = (await create_listed(uncached, tokens.provider_a, spec()))["id"]
    edit = await uncached.client.put(f"/v1/products/{product_id}", headers=tokens.provider_a,
                                     json=spec(summary="A new summary for version 2."))
    assert edit.status_code == 200, edit.text
    owner = (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.provider_a)).json()
    public = (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)).json()
    assert (owner["pending_draft"], public["pending_draft"]) == ("draft", None)


async def test_a_version_published_before_stored_documents_gets_one_on_its_first_public_read(
    uncached: RunningApp, tokens: Tokens
) -> None:
    product_id = (await create_listed(uncached, tokens.provider_a, spec()))["id"]
    expected = (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)).content
    async with uncached.db.sessionmaker() as s, s.begin():
        await s.execute(update(ProductVersion).where(ProductVersion.product_id == product_id)
                        .values(public_doc=None))
    assert (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)).content == expected
    _, version = await _rows(uncached, product_id)
    assert version.public_doc is not None
    assert (await uncached.client.get(f"/v1/products/{product_id}", headers=tokens.buyer)).content == expected
