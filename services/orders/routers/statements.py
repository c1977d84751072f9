"""Provider statements and payouts, and the buyer's and provider's money views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from services.orders import billing, statements
from services.orders.billing_schemas import (
    Payout,
    PayoutCreate,
    Statement,
    StatementLine,
    Summary,
    SummaryRow,
    payout_out,
)
from services.orders.runtime import Ctx
from shared.auth import Buyer, Operator, Principal, Provider, require_roles
from shared.db import DbSession
from shared.errors import RuleViolation
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["statements"])
PayoutReader = Annotated[Principal, Depends(require_roles("provider", "regulator", "operator"))]
GroupBy = Annotated[str, Query(description="Comma-separated: period (UTC month), product, plan.",
                               examples=["period,product"])]


def _org(principal: Principal) -> str:
    if not principal.org_id:
        raise RuleViolation("Your token has no organisation (org claim).", rule="organisation")
    return principal.org_id


@router.get("/providers/me/statements", response_model=Statement,
            summary="Your settlement statement for one month (provider)",
            description="Per currency: sales (including VAT), refunds, VAT collected, platform fees, your "
            "earnings, payouts in the month, and the balance earned but not yet paid out at its end.",
            responses=problem_docs(401, 403, 422))
async def my_statement(session: DbSession, provider: Provider,
                       period: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                                    examples=["2026-11"])]) -> Statement:
    org = _org(provider)
    start, end = statements.month_bounds(period)
    lines = await statements.statement(session, org, period)
    made = await statements.payouts_of(session, org, period)
    payouts = [payout_out(p).model_dump(mode="json") for p in made]
    return Statement(provider_org=org, period=period, period_start=start, period_end=end,
                     lines=[StatementLine(**line.__dict__) for line in lines], payouts=payouts)


@router.post("/payouts", response_model=Payout, status_code=status.HTTP_201_CREATED,
             summary="Pay a provider its balance at the end of a closed month (operator)",
             description="Decided once per provider, currency and month (a repeat answers 200 with it), "
             "booked in the ledger (`payout` entries) and made as a Stripe Payout where Stripe can (status "
             "`paid`; localstripe pays out EUR only, other currencies are `recorded` in the ledger). Stripe "
             "Connect is not modelled by localstripe: see docs/orders.md.",
             responses={200: {"model": Payout, "description": "Already paid out"},
                        **problem_docs(401, 403, 422, 503)})
async def create_payout(body: PayoutCreate, ctx: Ctx, response: Response,
                        operator: Operator) -> Payout:
    payout, made = await statements.pay_out(ctx.sessionmaker, billing.stripe_billing(ctx), operator,
                                            body.provider_org, body.currency, body.period)
    if not made:
        response.status_code = status.HTTP_200_OK
    return payout_out(payout)


@router.get("/payouts", response_model=list[Payout], summary="List payouts (provider: yours; operator, "
            "regulator: all)", responses=problem_docs(401, 403))
async def list_payouts(session: DbSession, principal: PayoutReader,
                       period: str | None = None) -> list[Payout]:
    org = None if principal.has_any(("regulator", "operator")) else _org(principal)
    return [payout_out(p) for p in await statements.payouts_of(session, org, period)]


async def _summary(session: DbSession, principal: Principal, side: str, group_by: str,
                   since: datetime | None, until: datetime | None) -> Summary:
    org, groups = _org(principal), [g.strip() for g in group_by.split(",") if g.strip()]
    rows = await statements.summary(session, group_by=groups, since=since, until=until, **{side: org})
    return Summary(organisation=org, group_by=groups, rows=[SummaryRow(**r) for r in rows])


@router.get("/buyers/me/spending", response_model=Summary,
            summary="What your organisation spent, by month, product and plan (buyer)",
            responses=problem_docs(401, 403, 422))
async def my_spending(session: DbSession, buyer: Buyer, group_by: GroupBy = "period",
                      since: datetime | None = None, until: datetime | None = None) -> Summary:
    return await _summary(session, buyer, "buyer_org", group_by, since, until)


@router.get("/providers/me/earnings/summary", response_model=Summary,
            summary="What your organisation earned, by month, product and plan (provider)",
            responses=problem_docs(401, 403, 422))
async def my_earnings_summary(session: DbSession, provider: Provider, group_by: GroupBy = "period",
                              since: datetime | None = None, until: datetime | None = None) -> Summary:
    return await _summary(session, provider, "provider_org", group_by, since, until)
