"""The regulator's view of the privacy spend: ``GET /v1/privacy/budgets`` and ``/charges``.

These take a *platform* token (``aud`` = sluice-api, from ``POST /oauth/token``) with role
regulator or operator, unlike the query endpoints (data-access tokens). The keys are the
access service's, as for data-access tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dataservice import budget
from services.dataservice.models import privacy_charges
from services.dataservice.privacy import MICRO, PICO
from services.dataservice.runtime import DataService
from shared.auth import Principal
from shared.errors import Forbidden, Unauthorized
from shared.pagination import CursorParam, LimitParam, Page, page_of, read_cursor
from shared.problems import problem_docs
from shared.runtime import DatabaseDep

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])
OVERSEERS = frozenset({"regulator", "operator"})
_bearer = HTTPBearer(auto_error=False, description="Platform token (role regulator or operator)")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def overseer(state: DataService, credentials: Credentials) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("This endpoint needs a platform token of a regulator or operator: get one "
                           "with the client credentials grant at the access service's POST /oauth/token.",
                           headers={"WWW-Authenticate": 'Bearer realm="sluice"'})
    principal = await state.platform_verifier.verify(credentials.credentials)
    if not principal.roles & OVERSEERS:
        raise Forbidden(f"The privacy spend is for regulators and operators; your token has: "
                        f"{', '.join(sorted(principal.roles)) or 'no role'}.",
                        required_roles=sorted(OVERSEERS))
    return principal


async def platform_operator(state: DataService, credentials: Credentials) -> Principal:
    """An operator's platform token: this service's own verifier takes data-access tokens, so
    its operator endpoints (the outbox's dead letters) check platform tokens here."""
    principal = await overseer(state, credentials)
    if "operator" not in principal.roles:
        raise Forbidden("This endpoint is for operators; your token has: "
                        f"{', '.join(sorted(principal.roles))}.", required_roles=["operator"])
    return principal


Overseer = Annotated[Principal, Depends(overseer)]


class Spend(BaseModel):
    answers: int
    epsilon: float
    delta: float


class OrganisationSpend(Spend):
    organisation_id: str | None


class EntitlementSpend(Spend):
    entitlement_id: str
    organisation_id: str | None


class ProductSpend(BaseModel):
    """One product's budget in one release period and who spent it."""

    product_id: str = Field(description="The provider's mapped product (the data set; catalog "
                            "products bound to it share its budget).")
    catalog_product_ids: list[str]
    period: str
    renews_at: datetime
    epsilon_total: float
    epsilon_spent: float
    epsilon_remaining: float
    delta_total: float
    delta_spent: float
    answers: int
    by_organisation: list[OrganisationSpend]
    by_entitlement: list[EntitlementSpend]


class Charge(BaseModel):
    id: int
    product_id: str
    period: str
    catalog_product_id: str
    entitlement_id: str
    organisation_id: str | None
    subject: str
    jti: str
    epsilon: float
    delta: float
    usage_id: str
    created_at: datetime


async def _session(db: DatabaseDep) -> Any:
    async with db.sessionmaker() as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session)]


@router.get("/budgets", response_model=Page[ProductSpend], responses=problem_docs(401, 403),
            summary="Privacy budgets and who spent them (regulator, operator; platform token)")
async def budgets(_who: Overseer, session: Session,
                  product_id: Annotated[str | None, Query(max_length=64)] = None,
                  period: Annotated[str | None, Query(max_length=16, examples=["2026-11"])] = None,
                  ) -> Page[ProductSpend]:
    """Per product and release period: the total, what is spent and left, by organisation and
    by entitlement (every L3 answer spends from its product's budget, whoever asks)."""
    items = []
    for row in await budget.budget_rows(session, product_id, period):
        c = privacy_charges.c
        catalog_ids = (await session.execute(select(c.catalog_product_id).distinct().where(
            c.product_id == row["product_id"], c.period == row["period"]))).scalars().all()
        total, spent = int(row["epsilon_total_micro"]), int(row["epsilon_spent_micro"])
        items.append(ProductSpend(
            product_id=row["product_id"], catalog_product_ids=sorted(catalog_ids), period=row["period"],
            renews_at=row["renews_at"], epsilon_total=total / MICRO, epsilon_spent=spent / MICRO,
            epsilon_remaining=max(0, total - spent) / MICRO,
            delta_total=int(row["delta_total_pico"]) / PICO, delta_spent=int(row["delta_spent_pico"]) / PICO,
            answers=int(row["answers"]),
            by_organisation=[OrganisationSpend(**s) for s in await budget.spend_by(
                session, row["product_id"], row["period"], "organisation_id")],
            by_entitlement=[EntitlementSpend(**s) for s in await budget.spend_by(
                session, row["product_id"], row["period"], "entitlement_id")]))
    return Page(items=items)


@router.get("/charges", response_model=Page[Charge], responses=problem_docs(400, 401, 403),
            summary="Every charge to a product's privacy budget (regulator, operator; platform token)")
async def charges(_who: Overseer, session: Session,
                  product_id: Annotated[str, Query(max_length=64, description="The mapped product.")],
                  period: Annotated[str | None, Query(max_length=16)] = None,
                  limit: LimitParam = 100, cursor: CursorParam = None) -> Page[Charge]:
    """Oldest first; each charge is also the `charge` of a `dataservice.query.executed` audit event."""
    after = read_cursor(cursor, lambda p: int(p.get("id", 0))) or 0
    rows = await budget.charges(session, product_id, period, after, limit)
    items = [Charge(id=r["id"], product_id=r["product_id"], period=r["period"],
                    catalog_product_id=r["catalog_product_id"], entitlement_id=r["entitlement_id"],
                    organisation_id=r["organisation_id"], subject=r["subject"], jti=r["jti"],
                    epsilon=int(r["epsilon_micro"]) / MICRO, delta=int(r["delta_pico"]) / PICO,
                    usage_id=r["usage_id"], created_at=r["created_at"]) for r in rows]
    page, nxt = page_of(items, limit, lambda c: {"id": c.id})
    return Page(items=page, next_cursor=nxt)
