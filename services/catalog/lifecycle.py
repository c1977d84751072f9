"""Product lifecycle: drafts, review, versions, suspension, retirement.

``draft → in_review (L3) → listed → suspended ↔ listed → retired``. Publishing
freezes the working copy into an immutable, numbered ``product_versions`` row;
editing a published product opens a new working copy with the next number,
while orders keep pointing at the versions they pinned. Every transition
writes an audit event to the outbox in the same transaction.

Visibility is decided here too: a product that is not yours and was never
published is "not found" to you, so its existence does not leak.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import rules, views
from services.catalog.models import Product, ProductTag, ProductVersion
from services.catalog.schemas import ProductSpec
from services.catalog.statuses import UNPUBLISHED, DraftStatus, ProductStatus, move
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound
from shared.outbox import enqueue_command, record_event

SERVICE = "catalog"
REGULATOR_ROLES = frozenset({"regulator", "operator"})


def new_product_id() -> str:
    return f"prd_{secrets.token_hex(8)}"


def is_regulator(principal: Principal) -> bool:
    return principal.has_any(REGULATOR_ROLES)


def is_owner(principal: Principal, product: Product) -> bool:
    return "provider" in principal.roles and principal.org_id == product.provider_org


def can_see(principal: Principal, product: Product) -> bool:
    """Published products are public to every authenticated caller; drafts only to
    their own provider and to regulators."""
    return product.latest_version > 0 or is_owner(principal, product) or is_regulator(principal)


def can_see_draft(principal: Principal, product: Product) -> bool:
    return is_owner(principal, product) or is_regulator(principal)


def _not_found(product_id: str) -> NotFound:
    return NotFound(
        f"No product {product_id} that you can see. Search the catalog with GET /v1/products.",
        problem="product-not-found",
        title="Product not found",
    )


async def _load(session: AsyncSession, product_id: str, *, for_update: bool = False) -> Product | None:
    stmt = select(Product).where(Product.id == product_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_visible(session: AsyncSession, principal: Principal, product_id: str) -> Product:
    product = await _load(session, product_id)
    if product is None or not can_see(principal, product):
        raise _not_found(product_id)
    return product


async def get_visible_with_latest(
    session: AsyncSession, principal: Principal, product_id: str
) -> tuple[Product, ProductVersion | None]:
    """The product and its latest published version in one round trip (the hot read path)."""
    stmt = (
        select(Product, ProductVersion)
        .outerjoin(
            ProductVersion,
            and_(ProductVersion.product_id == Product.id, ProductVersion.version == Product.latest_version),
        )
        .where(Product.id == product_id)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None or not can_see(principal, row[0]):
        raise _not_found(product_id)
    return row[0], row[1]


async def get_owned(session: AsyncSession, principal: Principal, product_id: str) -> Product:
    """The caller's own product, locked for the transition (404 for anybody else's)."""
    product = await _load(session, product_id, for_update=True)
    if product is None or not is_owner(principal, product):
        raise NotFound(
            f"No product {product_id} among your organisation's products. "
            "List yours with GET /v1/products?provider=<your org>&status=draft.",
            problem="product-not-found",
            title="Product not found",
        )
    return product


async def get_for_regulator(session: AsyncSession, product_id: str) -> Product:
    product = await _load(session, product_id, for_update=True)
    if product is None:
        raise _not_found(product_id)
    return product


async def get_version(session: AsyncSession, product_id: str, version: int) -> ProductVersion:
    row = await session.get(ProductVersion, (product_id, version))
    if row is None:
        raise NotFound(
            f"Product {product_id} has no published version {version}. "
            "List its versions with GET /v1/products/{product_id}/versions.",
            problem="version-not-found",
            title="Version not found",
        )
    return row


async def list_versions(
    session: AsyncSession, product_id: str, *, after: int = 0, limit: int | None = None
) -> Sequence[ProductVersion]:
    """Published versions above ``after``, oldest first (at most ``limit``)."""
    stmt = (
        select(ProductVersion)
        .where(ProductVersion.product_id == product_id, ProductVersion.version > after)
        .order_by(ProductVersion.version)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def source_grades(
    session: AsyncSession, principal: Principal, ids: list[str]
) -> dict[str, str | None]:
    if not ids:
        return {}
    rows = (await session.execute(select(Product).where(Product.id.in_(ids)))).scalars().all()
    found = {p.id: p.grade for p in rows if can_see(principal, p)}
    return {pid: found.get(pid) for pid in ids}


async def _audit(
    session: AsyncSession, principal: Principal, product: Product, verb: str, **details: Any
) -> None:
    await record_event(
        session,
        service=SERVICE,
        action=f"catalog.product.{verb}",
        subject_type="product",
        subject_id=product.id,
        actor=principal,
        details={k: v for k, v in details.items() if v is not None},
    )


def _project(product: Product, draft: dict[str, Any]) -> list[str]:
    """Copy the searchable fields of ``draft`` onto the product row; return its tags."""
    tags: list[str] = draft["tags"]
    plans: list[dict[str, Any]] = draft["plans"]
    product.slug = draft["slug"]
    product.title = draft["title"]
    product.summary = draft["summary"]
    product.description = draft["description"]
    product.tags_text = " ".join(tags)
    product.category = draft["category"]
    product.grade = draft["grade"]
    kinds = {p["kind"] for p in plans}
    product.has_free = "free" in kinds
    product.has_one_time = "one_time" in kinds
    product.has_subscription = "subscription" in kinds
    product.has_metered = "metered" in kinds
    product.currency = plans[0]["currency"] if plans else None
    product.min_price = min(p["price"] for p in plans) if plans else None
    return tags


async def _replace_tags(session: AsyncSession, product: Product, tags: list[str]) -> None:
    await session.execute(delete(ProductTag).where(ProductTag.product_pk == product.pk))
    if tags:
        await session.execute(
            insert(ProductTag), [{"product_pk": product.pk, "tag": t} for t in tags]
        )


async def _prepare_draft(
    session: AsyncSession, principal: Principal, spec: ProductSpec, existing_plan_ids: set[str]
) -> dict[str, Any]:
    rules.check_product(spec, await source_grades(session, principal, spec.derived_from))
    draft = spec.model_dump(mode="json", by_alias=True)
    draft["tags"] = rules.normalise_tags(spec.tags)
    draft["plans"] = rules.normalise_plans(spec.plans, existing_plan_ids)
    return draft


async def _flush_unique(session: AsyncSession, slug: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"Your organisation already has a product with slug {slug!r}; choose another slug.",
            problem="slug-taken",
            title="Slug taken",
        ) from exc


async def _slug_taken(session: AsyncSession, org: str, slug: str, except_id: str | None) -> bool:
    stmt = select(Product.id).where(Product.provider_org == org, Product.slug == slug)
    found = (await session.execute(stmt)).scalar_one_or_none()
    return found is not None and found != except_id


def _slug_conflict(slug: str) -> Conflict:
    return Conflict(
        f"Your organisation already has a product with slug {slug!r}; choose another slug.",
        problem="slug-taken",
        title="Slug taken",
    )


async def create_product(session: AsyncSession, principal: Principal, spec: ProductSpec) -> Product:
    if not principal.org_id:
        raise Forbidden("Your token names no organisation (`org` claim); providers act for one.")
    draft = await _prepare_draft(session, principal, spec, set())
    if await _slug_taken(session, principal.org_id, spec.slug, None):
        raise _slug_conflict(spec.slug)
    now = utcnow()
    product = Product(
        id=new_product_id(),
        provider_org=principal.org_id,
        status=ProductStatus.DRAFT,
        latest_version=0,
        draft=draft,
        draft_version=1,
        draft_status=DraftStatus.EDITING,
        created_at=now,
        updated_at=now,
    )
    tags = _project(product, draft)
    session.add(product)
    await _flush_unique(session, spec.slug)
    await _replace_tags(session, product, tags)
    await _audit(session, principal, product, "created", version=1)
    return product


def _editable(product: Product) -> None:
    if product.status == ProductStatus.RETIRED:
        raise Conflict("The product is retired; create a new product instead.",
                       problem="product-retired", title="Product retired")
    if product.draft_status == DraftStatus.IN_REVIEW:
        raise Conflict(
            "The product's draft is under regulator review and cannot change until the regulator "
            "approves or rejects it.",
            problem="under-review",
            title="Under review",
        )


async def replace_draft(
    session: AsyncSession, principal: Principal, product_id: str, spec: ProductSpec
) -> Product:
    product = await get_owned(session, principal, product_id)
    _editable(product)
    existing_ids = {p["id"] for p in (product.draft or {}).get("plans", [])}
    if product.latest_version:
        latest = await get_version(session, product.id, product.latest_version)
        existing_ids |= {p["id"] for p in latest.content["plans"]}
        if spec.slug != product.slug:
            raise rules.refuse(
                "slug-immutable-after-publication",
                f"The slug of a published product is fixed ({product.slug!r}); keep it.",
            )
    elif await _slug_taken(session, product.provider_org, spec.slug, product.id):
        raise _slug_conflict(spec.slug)
    draft = await _prepare_draft(session, principal, spec, existing_ids)
    product.draft = draft
    product.draft_status = DraftStatus.EDITING
    if product.draft_version is None:
        product.draft_version = product.latest_version + 1
    product.updated_at = utcnow()
    if not product.latest_version:
        # Before publication the draft is what its owner and regulators search.
        await _replace_tags(session, product, _project(product, draft))
    await _flush_unique(session, spec.slug)
    await _audit(session, principal, product, "updated", version=product.draft_version)
    return product


async def _publish(
    session: AsyncSession, principal: Principal, product: Product, *,
    approved_by: str | None = None, note: str | None = None,
) -> None:
    assert product.draft is not None and product.draft_version is not None
    spec = ProductSpec.model_validate(product.draft)
    now = utcnow()
    version = product.draft_version
    row = ProductVersion(
        product_id=product.id,
        version=version,
        grade=spec.grade,
        content=product.draft,
        guardrails=rules.guardrails_for(spec),
        published_at=now,
        published_by=product.submitted_by or principal.subject,
        approved_by=approved_by,
        approval_note=note,
    )
    row.public_doc = views.version_document(product, row)  # rendered once: versions never change
    session.add(row)
    await _replace_tags(session, product, _project(product, product.draft))
    first = product.status in UNPUBLISHED
    product.latest_version = version
    product.draft = None
    product.draft_version = None
    product.draft_status = None
    product.submitted_at = None
    product.submitted_by = None
    product.updated_at = now
    action = "published"  # a new version of a listed product: no status change
    if first:
        action = move(product, ProductStatus.LISTED)
        product.listed_at = now
        product.status_reason = None
    await session.flush()
    await _audit(session, principal, product, action, version=version)


async def submit(session: AsyncSession, principal: Principal, product_id: str) -> Product:
    product = await get_owned(session, principal, product_id)
    _editable(product)
    if product.draft is None:
        raise Conflict(
            "There is no draft to submit: edit the product (PUT /v1/products/{id}) to open one.",
            problem="no-draft",
            title="Nothing to submit",
        )
    spec = ProductSpec.model_validate(product.draft)
    rules.check_product(spec, await source_grades(session, principal, spec.derived_from))
    rules.check_submittable(spec)
    if spec.grade == "L3_sensitive":
        product.submitted_by = principal.subject
        product.draft_status = DraftStatus.IN_REVIEW
        product.submitted_at = utcnow()
        product.updated_at = product.submitted_at
        if product.status == ProductStatus.DRAFT:
            move(product, ProductStatus.IN_REVIEW)
        await session.flush()
        await _audit(session, principal, product, "submitted", version=product.draft_version)
        return product
    await _publish(session, principal, product)
    return product


def _in_review(product: Product) -> None:
    if product.draft_status != DraftStatus.IN_REVIEW:
        raise Conflict(
            f"Product {product.id} has no draft waiting for review; see GET /v1/review-queue.",
            problem="not-in-review",
            title="Not under review",
        )


async def approve(session: AsyncSession, principal: Principal, product_id: str, note: str) -> Product:
    product = await get_for_regulator(session, product_id)
    _in_review(product)
    version = product.draft_version
    await _audit(session, principal, product, "approved", version=version, note=note)
    await _publish(session, principal, product, approved_by=principal.subject, note=note)
    return product


async def reject(session: AsyncSession, principal: Principal, product_id: str, reason: str) -> Product:
    product = await get_for_regulator(session, product_id)
    _in_review(product)
    product.draft_status = DraftStatus.EDITING
    product.submitted_at = None
    product.submitted_by = None
    product.status_reason = reason
    product.updated_at = utcnow()
    if product.status == ProductStatus.IN_REVIEW:
        move(product, ProductStatus.DRAFT)
    await session.flush()
    await _audit(session, principal, product, "rejected", version=product.draft_version, reason=reason)
    return product


def _transition_conflict(product: Product, action: str, allowed: str) -> Conflict:
    return Conflict(
        f"Cannot {action} product {product.id}: it is {product.status} (only {allowed} products can be).",
        problem="invalid-transition",
        title="Transition not allowed",
        status_now=product.status,
    )


async def _tell_access(session: AsyncSession, product: Product, command: str, reason: str) -> None:
    """Entitlements of a suspended product must stop (and restart on reinstatement):
    the access service learns it through the outbox, in this transaction."""
    await enqueue_command(
        session, destination="access", message_id=uuid.uuid4().hex,
        method="POST", path=f"/v1/products/{product.id}/{command}", body={"reason": reason},
    )


async def suspend(session: AsyncSession, principal: Principal, product_id: str, reason: str) -> Product:
    product = await get_for_regulator(session, product_id)
    if product.status != ProductStatus.LISTED:
        raise _transition_conflict(product, "suspend", ProductStatus.LISTED)
    action = move(product, ProductStatus.SUSPENDED)
    product.status_reason = reason
    product.updated_at = utcnow()
    await session.flush()
    await _audit(session, principal, product, action, version=product.latest_version, reason=reason)
    await _tell_access(session, product, "suspend-entitlements", reason)
    return product


async def reinstate(session: AsyncSession, principal: Principal, product_id: str, reason: str) -> Product:
    product = await get_for_regulator(session, product_id)
    if product.status != ProductStatus.SUSPENDED:
        raise _transition_conflict(product, "reinstate", ProductStatus.SUSPENDED)
    action = move(product, ProductStatus.LISTED)
    product.status_reason = reason
    product.updated_at = utcnow()
    await session.flush()
    await _audit(session, principal, product, action, version=product.latest_version, reason=reason)
    await _tell_access(session, product, "reinstate-entitlements", reason)
    return product


async def retire(
    session: AsyncSession, principal: Principal, product_id: str, reason: str | None
) -> Product:
    product = await get_owned(session, principal, product_id)
    if product.status == ProductStatus.RETIRED:
        raise _transition_conflict(product, "retire", "draft, in_review, listed or suspended")
    action = move(product, ProductStatus.RETIRED)
    product.status_reason = reason
    product.draft_status = None
    if product.latest_version:
        product.draft = None
        product.draft_version = None
    # else: the never-published draft stays readable by its owner and regulators.
    product.submitted_at = None
    product.submitted_by = None
    product.updated_at = utcnow()
    await session.flush()
    await _audit(session, principal, product, action, version=product.latest_version or None,
                 reason=reason)
    return product


async def review_queue(
    session: AsyncSession, *, limit: int, after: tuple[str, int] | None
) -> list[Product]:
    stmt = select(Product).where(Product.draft_status == DraftStatus.IN_REVIEW)
    if after is not None:
        ts = datetime.fromisoformat(after[0])
        stmt = stmt.where(
            (Product.submitted_at > ts) | ((Product.submitted_at == ts) & (Product.pk > after[1]))
        )
    stmt = stmt.order_by(Product.submitted_at, Product.pk).limit(limit + 1)
    return list((await session.execute(stmt)).scalars().all())
