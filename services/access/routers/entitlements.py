"""Entitlements and data-access tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.access import data_tokens, entitlements, grant_batch
from services.access.audit_events import audit
from services.access.catalog_client import CatalogClient
from services.access.entitlement_schemas import (
    DataTokenRequest,
    DataTokenResponse,
    Entitlement,
    EntitlementCreate,
    GrantBatch,
    GrantBatchResults,
    ProductSuspensionResult,
    Reason,
)
from services.access.models import Entitlement as EntitlementRow
from services.access.runtime import Access, AccessState
from shared.auth import Buyer, Principal, Regulator, Service, require_roles
from shared.db import DbSession
from shared.errors import ProblemError
from shared.pagination import CursorParam, LimitParam, Page
from shared.problems import field_errors, problem_docs, validation_problem
from shared.runtime import runtime_of

router = APIRouter(prefix="/v1", tags=["entitlements"])

AnyParty = Annotated[
    Principal, Depends(require_roles("buyer", "provider", "regulator", "operator", "service"))
]
Overseer = Annotated[Principal, Depends(require_roles("service", "regulator", "operator"))]


async def get_catalog(request: Request) -> CatalogClient:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
    # request that cost the data-token issue ~10 % of its CPU (docs/performance.md).
    return runtime_of(request.app).state(AccessState).catalog


Catalog = Annotated[CatalogClient, Depends(get_catalog)]


async def present(session: DbSession, row: EntitlementRow) -> Entitlement:
    orgs = await entitlements.org_statuses(session, (row.buyer_org, row.provider_org))
    return Entitlement.of(row, entitlements.effective_status(row, orgs),
                          entitlements.suspended_by(row, orgs))


@router.post(
    "/entitlements",
    response_model=Entitlement,
    status_code=status.HTTP_201_CREATED,
    summary="Grant an entitlement for a paid order (service)",
    description=(
        "Called by the orders service (through its outbox) when an order is paid. Idempotent by "
        "`order_id`: the first call creates the entitlement (201), repeats return it (200). "
        "Access reads the pinned version from the catalog's internal API for the audience "
        "(`delivery.data_service_url`), grade, plan quota, usage policy and guardrails, and "
        "checks the declared purpose against the usage policy.\n\nRole: `service`."
    ),
    responses={200: {"model": Entitlement, "description": "Already granted for this order"},
               **problem_docs(401, 403, 409, 422, 503)},
)
async def grant_entitlement(
    body: EntitlementCreate, session: DbSession, caller: Service, catalog: Catalog,
    response: Response,
) -> Entitlement:
    req = entitlements.GrantRequest(**body.model_dump())
    row, created = await entitlements.grant(session, catalog, req, caller)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await present(session, row)


@router.post(
    "/entitlements/batch",
    response_model=GrantBatchResults,
    summary="Grant the entitlements of several paid orders in one request (service)",
    description=(
        "The orders relay's batch of `POST /v1/entitlements`: up to 100 items, each an "
        "`idempotency_key` (echoed) and the single grant's body. Each item is answered exactly "
        "as `POST /v1/entitlements` would answer it alone — 201 granted, 200 already granted "
        "for that `order_id`, 409 another entitlement on other terms, 422 a validation or rule "
        "problem, 503 the catalog unavailable — in `results`, in the items' order. A refused "
        "item writes nothing; the others are granted (one transaction). The request itself is "
        "answered 200 whatever its items' answers; more than 100 items is a 422 problem."
        "\n\nRole: `service`."
    ),
    responses=problem_docs(401, 403, 422),
)
async def grant_entitlements(
    batch: GrantBatch, session: DbSession, caller: Service, catalog: Catalog,
) -> Response:
    requests: list[entitlements.GrantRequest | ProblemError] = []
    for item in batch.items:
        try:
            body = EntitlementCreate.model_validate(item.body)
        except ValidationError as exc:
            requests.append(_InvalidItem(validation_problem(
                field_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]),
                _GRANT_PATH)))
            continue
        requests.append(entitlements.GrantRequest(**body.model_dump()))
    outcomes = await grant_batch.grant_many(session, catalog, requests, caller)
    rows = [o[0] for o in outcomes if not isinstance(o, ProblemError)]
    orgs = await entitlements.org_statuses(session, {o for r in rows for o in (r.buyer_org, r.provider_org)})
    results = []
    for item, outcome in zip(batch.items, outcomes, strict=True):
        if isinstance(outcome, _InvalidItem):
            status_code, answer = 422, outcome.body
        elif isinstance(outcome, ProblemError):
            status_code, answer = outcome.status, outcome.to_body(instance=_GRANT_PATH)
        else:
            row, created = outcome
            status_code = 201 if created else 200
            answer = Entitlement.of(row, entitlements.effective_status(row, orgs),
                                    entitlements.suspended_by(row, orgs)).model_dump(mode="json")
        results.append({"idempotency_key": item.idempotency_key, "status": status_code, "body": answer})
    return JSONResponse({"results": results})


_GRANT_PATH = "/v1/entitlements"


class _InvalidItem(ProblemError):
    """A batch item whose body did not validate: answered with the validation problem the
    single grant's request handler would give."""

    status = 422

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(str(body["detail"]), problem="validation-error")
        self.body = body


@router.get(
    "/entitlements",
    response_model=Page[Entitlement],
    summary="List entitlements (buyer: own; provider: own products; regulator, operator, service: all)",
    description=(
        "Buyers see their organisation's entitlements, providers the entitlements to their "
        "products, regulators, operators and services all of them. Oldest first."
    ),
    responses=problem_docs(400, 401, 403),
)
async def list_entitlements(
    session: DbSession,
    caller: AnyParty,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
    product_id: Annotated[str | None, Query(max_length=64)] = None,
    order_id: Annotated[str | None, Query(max_length=64)] = None,
    buyer: Annotated[str | None, Query(max_length=64,
                                       description="Only this buyer organisation's (org_…).")] = None,
    provider: Annotated[str | None, Query(max_length=64, description="Only entitlements to this "
                                          "provider organisation's products (org_…).")] = None,
) -> Page[Entitlement]:
    rows, nxt = await entitlements.list_visible(
        session, caller, limit=limit, cursor=cursor, product_id=product_id, order_id=order_id,
        buyer=buyer, provider=provider,
    )
    orgs = await entitlements.org_statuses(
        session, {o for r in rows for o in (r.buyer_org, r.provider_org)}
    )
    items = [Entitlement.of(r, entitlements.effective_status(r, orgs),
                            entitlements.suspended_by(r, orgs)) for r in rows]
    return Page(items=items, next_cursor=nxt)


@router.get(
    "/entitlements/{entitlement_id}",
    response_model=Entitlement,
    summary="Get one entitlement (its buyer, its provider, regulators, operators, services)",
    responses=problem_docs(401, 403, 404),
)
async def get_entitlement(entitlement_id: str, session: DbSession, caller: AnyParty) -> Entitlement:
    return await present(session, await entitlements.get_visible(session, entitlement_id, caller))


@router.post(
    "/entitlements/by-order/{order_id}/revoke",
    response_model=Entitlement,
    summary="Revoke the entitlement of an order, e.g. after a refund (service, regulator, operator)",
    description="Idempotent: revoking a revoked entitlement returns it unchanged. The revocation "
    "appears in the revocation feed at once.",
    responses=problem_docs(401, 403, 404, 422),
)
async def revoke_by_order(
    order_id: str, body: Reason, session: DbSession, caller: Overseer
) -> Entitlement:
    return await present(session, await entitlements.revoke_by_order(session, order_id,
                                                                      body.reason, caller))


@router.post(
    "/entitlements/{entitlement_id}/revoke",
    response_model=Entitlement,
    summary="Revoke an entitlement for good (service, regulator, operator)",
    description="Idempotent. Live tokens stop working once data services poll the feed "
    "(at most 30 s); no new tokens are issued.",
    responses=problem_docs(401, 403, 404, 422),
)
async def revoke_entitlement(
    entitlement_id: str, body: Reason, session: DbSession, caller: Overseer
) -> Entitlement:
    row = await entitlements.get_visible(session, entitlement_id, caller)
    await entitlements.revoke(session, row, body.reason, caller)
    return await present(session, row)


@router.post(
    "/entitlements/{entitlement_id}/suspend",
    response_model=Entitlement,
    summary="Suspend an entitlement (regulator, operator)",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def suspend_entitlement(
    entitlement_id: str, body: Reason, session: DbSession, caller: Regulator
) -> Entitlement:
    row = await entitlements.get_visible(session, entitlement_id, caller)
    await entitlements.suspend(session, row, body.reason, caller)
    return await present(session, row)


@router.post(
    "/entitlements/{entitlement_id}/reinstate",
    response_model=Entitlement,
    summary="Lift an entitlement's own suspension (regulator, operator)",
    description="Product and organisation suspensions are lifted where they were made.",
    responses=problem_docs(401, 403, 404, 409, 422),
)
async def reinstate_entitlement(
    entitlement_id: str, body: Reason, session: DbSession, caller: Regulator
) -> Entitlement:
    row = await entitlements.get_visible(session, entitlement_id, caller)
    await entitlements.reinstate(session, row, body.reason, caller)
    return await present(session, row)


async def _product_suspension(
    catalog: CatalogClient, session: DbSession, product_id: str, suspended: bool, reason: str,
    caller: Principal,
) -> ProductSuspensionResult:
    changed = await entitlements.set_product_suspension(session, product_id, suspended, reason,
                                                        caller)
    catalog.forget(product_id)
    return ProductSuspensionResult(product_id=product_id, suspended=suspended, changed=changed)


@router.post(
    "/products/{product_id}/suspend-entitlements",
    response_model=ProductSuspensionResult,
    summary="Suspend every entitlement of a product (service, regulator, operator)",
    description="The catalog calls this (through its outbox) when a product is suspended; the "
    "entitlements appear in the revocation feed. Idempotent. Token issue also checks the "
    "catalog's status itself, so no token is issued even before this call arrives.",
    responses=problem_docs(401, 403, 422),
)
async def suspend_product_entitlements(
    product_id: str, body: Reason, catalog: Catalog, session: DbSession, caller: Overseer
) -> ProductSuspensionResult:
    return await _product_suspension(catalog, session, product_id, True, body.reason, caller)


@router.post(
    "/products/{product_id}/reinstate-entitlements",
    response_model=ProductSuspensionResult,
    summary="Lift a product suspension from its entitlements (service, regulator, operator)",
    description="The catalog calls this when a suspended product is listed again. Idempotent.",
    responses=problem_docs(401, 403, 422),
)
async def reinstate_product_entitlements(
    product_id: str, body: Reason, catalog: Catalog, session: DbSession, caller: Overseer
) -> ProductSuspensionResult:
    return await _product_suspension(catalog, session, product_id, False, body.reason, caller)


# --- data-access tokens ------------------------------------------------------------------

_REFUSALS = {
    "description": "Refused: the entitlement is revoked, suspended, expired or not yet valid, "
    "its quota or privacy budget is spent, the product is not listed, an organisation is "
    "suspended, or the purpose is no longer allowed. `type` names which.",
}


@router.post(
    "/entitlements/{entitlement_id}/tokens",
    response_model=DataTokenResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Get a data-access token for your entitlement (buyer)",
    description=(
        "Returns an RFC 9068 JWT (`typ: at+jwt`) whose `aud` is the entitlement's data service. "
        "It lives at most 15 minutes and never past the entitlement's end. Every request "
        "re-checks the entitlement, quota, privacy budget, both organisations, the product's "
        "catalog status and the usage policy.\n\nOnly the buyer organisation that owns the "
        "entitlement may call this; for anybody else it does not exist (404)."
    ),
    responses={**problem_docs(401, 404, 422, 503), 403: {**problem_docs(403)[403], **_REFUSALS}},
)
async def issue_data_token(
    entitlement_id: str,
    access: Access,
    caller: Buyer,
    catalog: Catalog,
    body: Annotated[DataTokenRequest | None, Body()] = None,
) -> Response:
    return await issue_response(access, caller, catalog, entitlement_id, body)



async def issue_response(access: AccessState, caller: Principal, catalog: CatalogClient,
                         entitlement_id: str, body: DataTokenRequest | None) -> Response:
    """The data-token issue for a caller already admitted as a buyer: the route above and
    ``services.access.token_lane`` (the same request, answered before FastAPI's routing and
    dependency solving) both answer with this. A refusal is audited and re-raised as the
    ``ProblemError`` it is (the app's handler renders it)."""
    # No request transaction (DbSession): the issue is one read and one audit insert, each a
    # single autocommit statement (data_tokens.issue); a refusal's audit is one too.
    settings, keys, db = access.settings, access.keys, access.db
    lifetime = min(settings.data_token_lifetime_seconds,
                   body.expires_in if body and body.expires_in else data_tokens.MAX_LIFETIME)
    try:
        issued = await data_tokens.issue(
            db, ent_id=entitlement_id, principal=caller, keys=keys, catalog=catalog,
            issuer=settings.token_issuer, lifetime=lifetime,
        )
    except ProblemError as exc:
        await audit(db, "data_token.refused", subject_type="entitlement",
                    subject_id=entitlement_id[:200] or "-", actor=caller,
                    outcome="denied" if exc.status in (403, 404) else "failure",
                    problem=exc.problem, status=exc.status)
        raise
    out = DataTokenResponse(
        access_token=issued.token, expires_in=issued.expires_in, expires_at=issued.expires_at,
        audience=issued.entitlement.audience, entitlement_id=issued.entitlement.id, jti=issued.jti,
    )
    return Response(out.model_dump_json(), status_code=201, media_type="application/json",
                    headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
