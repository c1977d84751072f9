"""Products: describe, publish, version, retire (provider); search (everyone); review,
suspend and reinstate (regulator, operator)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sluice.cli.core import (
    AllPages,
    Api,
    Cursor,
    JsonFile,
    JsonText,
    Limit,
    Reason,
    command,
    group,
    load_document,
    paged,
)

products = group("products", "Data products: search, describe, publish, review, suspend, retire.")

ProductId = Annotated[str, typer.Argument(help="the product's id (prd_...).")]
LIST_COLUMNS = ["id", "title", "grade", "status", "latest_version", "min_price", "currency", "plan_kinds"]


@command(products, "search", calls="catalog GET /v1/products", columns=LIST_COLUMNS)
def search(
    api: Api,
    q: Annotated[str | None, typer.Option(help="full-text search in titles, summaries, tags.")] = None,
    category: Annotated[str | None, typer.Option(help="only this category, e.g. health.")] = None,
    tag: Annotated[str | None, typer.Option(help="only products with this tag.")] = None,
    grade: Annotated[str | None, typer.Option(help="L1_public, L2_internal or L3_sensitive.")] = None,
    provider: Annotated[str | None, typer.Option(help="only this provider organisation (org_...).")] = None,
    plan_kind: Annotated[str | None, typer.Option(help="free, one_time, subscription or metered.")] = None,
    max_price: Annotated[int | None, typer.Option(help="cheapest plan at most this, in minor units "
                                                       "(needs --currency).")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217 currency for --max-price, e.g. EUR.")] = None,
    status: Annotated[str | None, typer.Option(help="draft, in_review, suspended or retired instead of "
                                                    "listed (providers: own; regulators: all).")] = None,
    sort: Annotated[str | None, typer.Option(help="relevance, newest or price.")] = None,
    limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False,
) -> Any:
    """Search the catalog (listed products unless --status says otherwise)."""
    return paged(api.search_products, all_pages=all_pages, cursor=cursor, limit=limit, q=q,
                 category=category, tag=tag, grade=grade, provider=provider, plan_kind=plan_kind,
                 max_price=max_price, currency=currency, status=status, sort=sort)


command(products, "list", calls="catalog GET /v1/products", columns=LIST_COLUMNS, hidden=True)(search)


@command(products, "get", calls="catalog GET /v1/products/{product_id}")
def get(api: Api, product_id: ProductId) -> Any:
    """One product: its latest published version, plans, policy, schema, guardrails."""
    return api.get_product(product_id)


@command(products, "create", calls="catalog POST /v1/products")
def create(api: Api, file: JsonFile = None, json_text: JsonText = None) -> Any:
    """Create a draft from a product document (provider). The answer's `id` is the product id."""
    return api.create_product(load_document(json_text, file))


@command(products, "update", calls="catalog PUT /v1/products/{product_id}")
def update(api: Api, product_id: ProductId, file: JsonFile = None, json_text: JsonText = None) -> Any:
    """Replace the working draft with a whole new document (provider).

    On a published product this opens the draft of its next version; `submit` publishes it."""
    return api.update_product(product_id, load_document(json_text, file))


@command(products, "draft", calls="catalog GET /v1/products/{product_id}/draft")
def draft(api: Api, product_id: ProductId) -> Any:
    """The working draft (provider, regulator, operator)."""
    return api.get_draft(product_id)


@command(products, "submit", calls="catalog POST /v1/products/{product_id}/submit")
def submit(api: Api, product_id: ProductId) -> Any:
    """Publish the draft as a new version (L1/L2 at once; L3 after a regulator's approval)."""
    return api.submit_product(product_id)


@command(products, "versions", calls="catalog GET /v1/products/{product_id}/versions",
         columns=["version", "grade", "published_at", "published_by", "approved_by"])
def versions(api: Api, product_id: ProductId, limit: Limit = None, cursor: Cursor = None,
             all_pages: AllPages = False) -> Any:
    """The published versions of a product, oldest first."""
    return paged(lambda **p: api.list_versions(product_id, **p), all_pages=all_pages, cursor=cursor,
                 limit=limit)


@command(products, "version", calls="catalog GET /v1/products/{product_id}/versions/{version}")
def version(api: Api, product_id: ProductId,
            number: Annotated[int, typer.Argument(help="the version number (1, 2, ...).")]) -> Any:
    """One published version, as orders and entitlements pin it."""
    return api.get_version(product_id, number)


@command(products, "retire", calls="catalog POST /v1/products/{product_id}/retire")
def retire(api: Api, product_id: ProductId, reason: Annotated[str | None, typer.Option(
        help="why (shown to buyers and in the audit log).")] = None) -> Any:
    """Retire a product for good: no new orders and no new data-access tokens (provider).

    A retired product cannot come back; publish a new product instead."""
    return api.retire_product(product_id, reason)


@command(products, "catalog", calls="catalog GET /v1/catalog.jsonld")
def dcat(api: Api, limit: Limit = None, cursor: Cursor = None) -> Any:
    """The listed products as a DCAT-AP JSON-LD catalogue (use -o json)."""
    return api.dcat_catalog(limit=limit, cursor=cursor)


# --- review and oversight -----------------------------------------------------------------

@command(products, "review-queue", calls="catalog GET /v1/review-queue",
         columns=["product_id", "title", "grade", "version", "provider_org", "submitted_at"])
def review_queue(api: Api, limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
    """L3 drafts waiting for a regulator (regulator, operator)."""
    return paged(api.review_queue, all_pages=all_pages, cursor=cursor, limit=limit)


@command(products, "approve", calls="catalog POST /v1/products/{product_id}/approve")
def approve(api: Api, product_id: ProductId, note: Annotated[str, typer.Option(
        help="your reasoning (goes into the audit log).")]) -> Any:
    """Approve an L3 draft under review: publish and list it (regulator only)."""
    return api.approve_product(product_id, note)


@command(products, "reject", calls="catalog POST /v1/products/{product_id}/reject")
def reject(api: Api, product_id: ProductId, reason: Reason) -> Any:
    """Send an L3 draft under review back to its provider (regulator only)."""
    return api.reject_product(product_id, reason)


@command(products, "suspend", calls="catalog POST /v1/products/{product_id}/suspend")
def suspend(api: Api, product_id: ProductId, reason: Reason) -> Any:
    """Suspend a listed product: no new orders or tokens; entitlements resume on reinstatement."""
    return api.suspend_product(product_id, reason)


@command(products, "reinstate", calls="catalog POST /v1/products/{product_id}/reinstate")
def reinstate(api: Api, product_id: ProductId, reason: Reason) -> Any:
    """List a suspended product again."""
    return api.reinstate_product(product_id, reason)
