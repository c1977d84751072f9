"""Answering one query: token grant → product → guardrails → SQL → counters, usage, audit.

No FastAPI here; the router only adapts HTTP to :class:`QueryService`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dataservice import usage
from services.dataservice.compiler import NOISE_FNS, Rules, build_plan, check_query
from services.dataservice.config import GRADES, Grade, grade_rank
from services.dataservice.datasource import BoundProduct, DataSource
from services.dataservice.guardrails import (
    Answer,
    assemble_aggregate,
    assemble_rows,
    check_differencing,
    most_similar,
    where_fingerprint,
)
from services.dataservice.query_model import (
    FNS,
    OPS,
    Noise,
    ProductSchema,
    Query,
    QueryResult,
    SchemaColumn,
)
from shared.auth import InvalidToken
from shared.db import utcnow
from shared.errors import Forbidden, ProblemError, ServiceUnavailable
from shared.events import Actor
from shared.outbox import record_event

logger = logging.getLogger("sluice.dataservice")

#: Earlier filtered queries read per check; the most similar ``history_size`` are compared.
HISTORY_SCAN = 2000


class TokenLimits(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_rows: int | None = Field(default=None, ge=1)
    min_group_size: int | None = Field(default=None, ge=1)
    epsilon_budget: float | None = Field(default=None, ge=0)
    query_quota: int | None = Field(default=None, ge=0)


class Grant(BaseModel):
    """What a data-access token grants (docs/contracts.md)."""

    model_config = ConfigDict(extra="ignore")
    sub: str
    jti: str = Field(min_length=1)
    org: str | None = None
    ent: str = Field(min_length=1, max_length=64)
    product: str = Field(min_length=1, max_length=64)
    version: int
    purpose: str
    grade: Grade
    limits: TokenLimits

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Grant:
        try:
            return cls.model_validate(claims)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise InvalidToken(f"This is not a data-access token: claims {fields} are missing or "
                               "malformed. Get one at the access service's "
                               "POST /v1/entitlements/{id}/tokens.") from exc

    @property
    def actor(self) -> Actor:
        return Actor(sub=self.sub, org=self.org, role="buyer")

    def usage_limits(self) -> usage.Limits:
        budget = self.limits.epsilon_budget
        return usage.Limits(self.limits.query_quota, None if budget is None else usage.to_micro(budget))


class ProductNotServed(Forbidden):
    problem, title = "wrong-product", "The token is not for this product"


class GradeMismatch(Forbidden):
    problem, title = "grade-mismatch", "The token's grade is below the product's"


@dataclass
class Context:
    grant: Grant
    bp: BoundProduct
    rules: Rules


class QueryService:
    def __init__(self, data: DataSource, sessionmaker: async_sessionmaker[AsyncSession], *,
                 mask_value: str = "***", history_size: int = 64, timeout: float = 20.0,
                 after_commit: Callable[[], None] | None = None) -> None:
        self.data = data
        self.sessionmaker = sessionmaker
        self.mask_value = mask_value
        self.history_size = history_size
        self.timeout = timeout
        self.after_commit = after_commit

    # --- resolving the token -------------------------------------------------------------

    def context(self, grant: Grant, requested_product: str | None = None) -> Context:
        if requested_product is not None and requested_product != grant.product:
            raise ProductNotServed(
                f"This token is for product {grant.product!r}, not {requested_product!r}. Get a "
                "token for the entitlement of the product you want to query.",
                token_product=grant.product)
        mapped = self.data.resolve(grant.product)
        if mapped in self.data.unavailable:
            raise ServiceUnavailable(
                f"Product {grant.product!r} is configured here but its table cannot be read; the "
                "provider has been told (see the service log). Try again later.")
        bp = self.data.bound.get(mapped)
        if bp is None:
            raise ProductNotServed(
                f"This data service does not serve product {grant.product!r}. Use the data service "
                "URL of that product's catalog entry (the token's audience).",
                token_product=grant.product)
        m = bp.mapping
        if grade_rank(grant.grade) < grade_rank(m.grade):
            raise GradeMismatch(
                f"The token says {grant.grade} but the provider grades this product {m.grade}; "
                "refused (when unsure, grade up). The product's catalog entry must be re-graded "
                "and a new token issued.", token_grade=grant.grade, product_grade=m.grade)
        grade = GRADES[max(grade_rank(grant.grade), grade_rank(m.grade))]
        k = None
        if grade_rank(grade) >= grade_rank("L3_sensitive"):
            k = max(m.min_group_size, grant.limits.min_group_size or 0)
        rules = Rules(grade=grade, max_rows=min(m.max_rows, grant.limits.max_rows or m.max_rows), k=k,
                      mask_value=self.mask_value)
        return Context(grant, bp, rules)

    # --- GET /v1/schema ---------------------------------------------------------------------

    async def schema(self, grant: Grant, requested_product: str | None = None) -> ProductSchema:
        ctx = self.context(grant, requested_product)
        m = ctx.bp.mapping
        async with self.sessionmaker() as session:
            state = await usage.current(session, grant.ent)
        limits = grant.usage_limits()
        columns = [
            SchemaColumn(name=c.name, type=ctx.bp.kind(c.name), description=c.description,
                         masked=c.name in m.masked, groupable=c.name not in m.masked,
                         filterable=c.name not in m.masked)
            for c in m.columns
        ]
        l3 = ctx.rules.aggregates_only
        return ProductSchema(
            product_id=m.product_id, title=m.title, grade=ctx.rules.grade,
            mode="aggregates" if l3 else "rows", columns=columns, operators=list(OPS),
            functions=[f for f in FNS if not (l3 and f in ("min", "max"))],
            max_rows=ctx.rules.max_rows, min_group_size=ctx.rules.k,
            noise_functions=list(NOISE_FNS) if l3 else [],
            epsilon_budget=grant.limits.epsilon_budget,
            epsilon_remaining=state.epsilon_remaining(limits),
            query_quota=grant.limits.query_quota, queries_remaining=state.queries_remaining(limits))

    # --- POST /v1/query -------------------------------------------------------------------

    async def run(self, grant: Grant, query: Query) -> QueryResult:
        try:
            return await self._run(grant, query)
        except ProblemError as exc:
            await self._audit_refusal(grant, query, exc)
            raise

    async def _run(self, grant: Grant, query: Query) -> QueryResult:
        ctx = self.context(grant, query.product)
        check_query(query, ctx.bp, ctx.rules)
        limits = grant.usage_limits()
        eps_micro = usage.to_micro(query.epsilon)
        async with self.sessionmaker() as session:
            # Fail fast before touching the provider's database; the charge re-checks.
            usage.refuse_if_spent(await usage.current(session, grant.ent), limits, eps_micro)
            earlier, seen_id = await self._earlier(session, ctx, query)
        answer, shown = await self._execute(ctx, query, earlier)
        async with self.sessionmaker() as session, session.begin():
            # The conditional UPDATE also serialises queries of one entitlement from here on.
            state = await usage.charge(session, grant.ent, grant.product, limits, eps_micro,
                                       len(answer.rows))
            if ctx.rules.k is not None and query.where:
                # Filtered queries that committed while this one ran: check against them too.
                newer, _ = await usage.earlier_filters(session, grant.ent, grant.product,
                                                       HISTORY_SCAN, after_id=seen_id)
                if newer:
                    await self._differencing(ctx, query, shown, newer)
                await usage.remember_filters(session, grant.ent, grant.product,
                                             where_fingerprint(query.where), query.where)
            now = utcnow()
            record = usage.usage_record(
                entitlement_id=grant.ent, jti=grant.jti, product_id=grant.product,
                rows_returned=len(answer.rows), suppressed_groups=answer.suppressed_groups,
                epsilon_spent=eps_micro / usage.MICRO, occurred_at=now)
            await usage.enqueue_usage(session, record)
            await record_event(
                session, service="dataservice", action="dataservice.query.executed",
                subject_type="entitlement", subject_id=grant.ent, actor=grant.actor,
                details={**self._audit_details(grant, query), "rows": len(answer.rows),
                         "suppressed_groups": answer.suppressed_groups,
                         "epsilon": query.epsilon, "usage_id": record["usage_id"]})
        if self.after_commit is not None:
            self.after_commit()
        return QueryResult(
            columns=answer.columns, rows=answer.rows, suppressed_groups=answer.suppressed_groups,
            truncated=answer.truncated,
            noise=Noise(epsilon=query.epsilon) if query.epsilon is not None else None,
            epsilon_remaining=state.epsilon_remaining(limits),
            queries_remaining=state.queries_remaining(limits))

    async def _earlier(self, session: AsyncSession, ctx: Context, query: Query) -> tuple[list[Any], int]:
        if ctx.rules.k is None or not query.where:
            return [], await usage.latest_history_id(session, ctx.grant.ent, ctx.grant.product)
        filters, top = await usage.earlier_filters(session, ctx.grant.ent, ctx.grant.product,
                                                   HISTORY_SCAN)
        return most_similar(query.where, filters, self.history_size), top

    async def _execute(self, ctx: Context, query: Query, earlier: list[Any]) -> tuple[Answer, set[Any]]:
        plan = build_plan(query, ctx.bp, ctx.rules)
        try:
            async with asyncio.timeout(self.timeout), self.data.engine.connect() as conn:
                rows = (await conn.execute(plan.stmt)).all()
                if not query.is_aggregate:
                    return assemble_rows(plan, rows, query, ctx.rules), set()
                answer, shown = await assemble_aggregate(conn, plan, rows, ctx.bp, query, ctx.rules)
                if ctx.rules.k is not None:
                    await check_differencing(conn, ctx.bp, query, shown, earlier, ctx.rules.k)
                return answer, shown
        except TimeoutError as exc:
            raise ServiceUnavailable(
                f"The query ran longer than {self.timeout:.0f} s on the provider's database and was "
                "stopped (nothing was charged). Narrow it with filters or fewer groups.") from exc
        except SQLAlchemyError as exc:
            logger.error("query on product %s failed in the provider database: %s",
                         ctx.grant.product, exc)
            raise ServiceUnavailable(
                "The provider's database could not answer (nothing was charged); try again later."
            ) from exc

    async def _differencing(self, ctx: Context, query: Query, shown: set[Any], earlier: list[Any]) -> None:
        assert ctx.rules.k is not None
        others = most_similar(query.where, earlier, self.history_size)
        if not others:
            return
        try:
            async with asyncio.timeout(self.timeout), self.data.engine.connect() as conn:
                await check_differencing(conn, ctx.bp, query, shown, others, ctx.rules.k)
        except (TimeoutError, SQLAlchemyError) as exc:
            raise ServiceUnavailable("The provider's database could not check this query against "
                                     "earlier ones (nothing was charged); try again.") from exc

    # --- audit ------------------------------------------------------------------------------

    @staticmethod
    def _audit_details(grant: Grant, query: Query) -> dict[str, Any]:
        text = query.model_dump_json(by_alias=True, exclude_none=True)
        return {"product_id": grant.product, "version": grant.version, "purpose": grant.purpose,
                "jti": grant.jti, "grade": grant.grade,
                "query": text if len(text) <= 4000 else text[:4000] + "…"}

    async def _audit_refusal(self, grant: Grant, query: Query, exc: ProblemError) -> None:
        details = {**self._audit_details(grant, query), "status": exc.status,
                   "problem": exc.problem, "reason": exc.detail[:500]}
        if "rule" in exc.extra:
            details["rule"] = exc.extra["rule"]
        try:
            async with self.sessionmaker() as session, session.begin():
                await record_event(
                    session, service="dataservice", action="dataservice.query.refused",
                    subject_type="entitlement", subject_id=grant.ent, actor=grant.actor,
                    outcome="denied" if exc.status < 500 else "failure", details=details)
        except SQLAlchemyError:
            logger.exception("could not record the refusal of a query by %s", grant.sub)
        if self.after_commit is not None:
            self.after_commit()
