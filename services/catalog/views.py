"""Response bodies built from rows (plain dicts, validated by the routers' models)."""

from __future__ import annotations

from typing import Any

from services.catalog import rules
from services.catalog.models import Product, ProductVersion
from services.catalog.schemas import ProductSpec, ProductState, ProductView, VersionBody
from services.catalog.statuses import DraftStatus

_CONTENT_KEYS = (
    "slug", "title", "summary", "description", "category", "tags", "grade", "personal_data",
    "deidentification", "rights", "schema", "sample", "usage_policy", "derived_from", "plans",
)


def _content(content: dict[str, Any]) -> dict[str, Any]:
    body = {k: content.get(k) for k in _CONTENT_KEYS}
    delivery = content["delivery"]
    body["delivery"] = {"data_service_url": delivery["data_service_url"], "mode": delivery["mode"]}
    return body


def _common(product: Product, *, show_draft_state: bool) -> dict[str, Any]:
    return {
        "id": product.id,
        "provider_org": product.provider_org,
        "status": product.status,
        "latest_version": product.latest_version,
        "pending_draft": (
            ("in_review" if product.draft_status == DraftStatus.IN_REVIEW else "draft")
            if show_draft_state and product.draft is not None
            else None
        ),
        "status_reason": product.status_reason if show_draft_state else None,
        "privacy_budget": product.privacy_budget,
        "created_at": product.created_at,
        "updated_at": product.updated_at,
        "listed_at": product.listed_at,
    }


def version_view(
    product: Product, version: ProductVersion, *, show_draft_state: bool
) -> dict[str, Any]:
    return {
        **_common(product, show_draft_state=show_draft_state),
        **_content(version.content),
        "version": version.version,
        "version_state": "published",
        "guardrails": version.guardrails,
        "published_at": version.published_at,
    }


def draft_view(product: Product) -> dict[str, Any]:
    assert product.draft is not None and product.draft_version is not None
    spec = ProductSpec.model_validate(product.draft)
    return {
        **_common(product, show_draft_state=True),
        **_content(product.draft),
        "version": product.draft_version,
        "version_state": "in_review" if product.draft_status == DraftStatus.IN_REVIEW else "draft",
        "guardrails": rules.guardrails_for(spec),
        "published_at": None,
    }


def internal_version(product: Product, version: ProductVersion) -> dict[str, Any]:
    c = version.content
    return {
        "product_id": product.id,
        "version": version.version,
        "status": product.status,
        "provider_org": product.provider_org,
        "slug": c["slug"],
        "title": c["title"],
        "grade": version.grade,
        "personal_data": c["personal_data"],
        "delivery": {
            "data_service_url": c["delivery"]["data_service_url"],
            "mode": c["delivery"]["mode"],
        },
        "usage_policy": c["usage_policy"],
        "guardrails": version.guardrails,
        "plans": c["plans"],
        "latest_version": product.latest_version,
    }


def internal_product(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.id,
        "status": product.status,
        "provider_org": product.provider_org,
        "latest_version": product.latest_version,
    }


def version_document(product: Product, version: ProductVersion) -> str:
    """The version's members of its public view as JSON, rendered once when it is published
    (the members never change): :func:`public_view_json` splices it after the product's state."""
    view = ProductView.model_validate(version_view(product, version, show_draft_state=False))
    body = VersionBody.model_validate(view.model_dump(include=set(VersionBody.model_fields)))
    return body.model_dump_json(by_alias=True)


def public_view_json(state: dict[str, Any], document: str) -> bytes:
    """``ProductView`` JSON of a published version for the public: the product's current state
    (pending draft and status reason hidden) then the stored version document, byte for byte
    what validating and dumping the whole view gives (ProductView lists the state first)."""
    head = ProductState.model_validate(
        {**state, "pending_draft": None, "status_reason": None}
    ).model_dump_json()
    return head[:-1].encode() + b"," + document[1:].encode()
