"""``POST /v1/query`` and ``GET /v1/schema``: for holders of a data-access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from services.dataservice.query_model import ProductSchema, QueryResult
from services.dataservice.query_model import Query as StructuredQuery
from services.dataservice.runtime import DataService
from services.dataservice.service import Grant
from shared.auth import CurrentPrincipal
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["query"])


async def current_grant(principal: CurrentPrincipal) -> Grant:
    return Grant.from_claims(principal.claims)


DataGrant = Annotated[Grant, Depends(current_grant)]


_EXAMPLES = {
    "aggregate (L3)": {
        "summary": "Visits and mean cost per district in 2024",
        "value": {
            "select": ["district"],
            "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "cost_eur", "as": "avg_cost"}],
            "where": [{"column": "year", "op": "eq", "value": 2024}],
            "group_by": ["district"],
            "order_by": [{"column": "district", "dir": "asc"}],
            "limit": 100,
        },
    },
    "noisy aggregate (L3)": {
        "summary": "Visit counts per service with Laplace noise (epsilon 0.1 charged)",
        "value": {"select": ["service"], "aggregates": [{"fn": "count"}],
                  "group_by": ["service"], "epsilon": 0.1},
    },
    "rows (L1/L2)": {
        "summary": "Monthly tram trips in one district",
        "value": {"select": ["year", "month", "trips"],
                  "where": [{"column": "district", "op": "eq", "value": "Altstadt"},
                            {"column": "mode", "op": "eq", "value": "tram"}],
                  "order_by": [{"column": "year"}, {"column": "month"}], "limit": 36},
    },
}


@router.post(
    "/query",
    response_model=QueryResult,
    summary="Run a structured query on the token's product (data-access token)",
    description=(
        "Structured JSON, never SQL. Rows for L1/L2 products (capped, masked columns masked); "
        "aggregates only for L3 products (groups of fewer than k people suppressed, filters that "
        "single out fewer than k people refused, optional Laplace noise charged to the privacy "
        "budget). Every query counts against the entitlement's quota and is audited. "
        "Caller: the holder of a data-access token (RFC 9068, `aud` = this service, scope `query`)."
    ),
    responses=problem_docs(401, 403, 422, 503),
)
async def run_query(
    grant: DataGrant,
    state: DataService,
    body: Annotated[StructuredQuery, Body(openapi_examples=_EXAMPLES)],
) -> QueryResult:
    return await state.query_service.run(grant, body)


@router.get(
    "/schema",
    response_model=ProductSchema,
    summary="What the token's product exposes (data-access token)",
    description="Columns with types and masking, operators, functions, the effective grade and "
    "limits, and what is left of the entitlement's quota and privacy budget.",
    responses=problem_docs(401, 403, 503),
)
async def get_schema(
    grant: DataGrant,
    state: DataService,
    product: Annotated[str | None, Query(max_length=64, description="Optional: must be the "
                                         "token's product.")] = None,
) -> ProductSchema:
    return await state.query_service.schema(grant, product)
