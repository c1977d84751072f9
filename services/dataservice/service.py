"""Answering one query: token grant → product → checks → answer → charge, usage, audit.

L1/L2: exact rows or aggregates from the provider's database. L3: a differentially
private answer (:mod:`services.dataservice.dp_answer`) on the period's bounded copy,
charged to the product's budget and the entitlement's share in one transaction before it
is returned. No FastAPI here; the router only adapts HTTP to :class:`QueryService`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dataservice import budget, usage
from services.dataservice.compiler import NOISE_FNS, QueryRefused, Rules, build_plan, check_query
from services.dataservice.config import GRADES, Grade, grade_rank
from services.dataservice.datasource import BoundProduct, DataSource
from services.dataservice.dp_answer import (
    DPAnswer,
    ExactCache,
    Statistics,
    assemble,
    public_keys,
    release_noisy,
    statistics,
)
from services.dataservice.guardrails import Answer, assemble_aggregate, assemble_rows
from services.dataservice.privacy import PICO, CalibrationError, DPPlan
from services.dataservice.privacy import plan as privacy_plan
from services.dataservice.query_model import (
    FNS,
    OPS,
    Accuracy,
    BudgetState,
    Noise,
    PrivacyReport,
    PrivacyTerms,
    ProductSchema,
    Query,
    QueryResult,
    SchemaColumn,
)
from services.dataservice.releases import Releases, ReleaseUnavailable
from shared.auth import InvalidToken
from shared.db import utcnow
from shared.errors import Forbidden, ProblemError, ServiceUnavailable
from shared.events import Actor
from shared.outbox import record_event

logger = logging.getLogger("sluice.dataservice")

#: The catalog's names for column types (docs/contracts.md, catalog schema fields).
CATALOG_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean",
                 "date": "date", "datetime": "datetime"}


class TokenLimits(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_rows: int | None = Field(default=None, ge=1)
    min_group_size: int | None = Field(default=None, ge=1)
    epsilon_budget: float | None = Field(default=None, ge=0)
    query_quota: int | None = Field(default=None, ge=0)
    #: The plan's default epsilon per L3 query (when the query names none).
    query_epsilon: float | None = Field(default=None, gt=0, le=10)


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
    def __init__(self, data: DataSource, sessionmaker: async_sessionmaker[AsyncSession],
                 releases: Releases, *, mask_value: str = "***", timeout: float = 20.0,
                 min_epsilon: float = 0.01, cache: ExactCache | None = None,
                 on_charge: Callable[[str, str], None] | None = None) -> None:
        self.data = data
        self.sessionmaker = sessionmaker
        self.releases = releases
        self.mask_value = mask_value
        self.timeout = timeout
        self.min_epsilon = min_epsilon
        self.cache = cache or ExactCache()
        self.on_charge = on_charge  # (mapped product, catalog product) after a charge commits

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
            if m.privacy is None or m.person_column is None:
                raise ServiceUnavailable(
                    f"Product {grant.product!r} is served here as {m.grade} but the token grades it "
                    f"{grade}, which needs a person column and a privacy budget in the provider's "
                    "mapping; the provider must add them (the catalog entry and the mapping disagree).")
            k = max(m.min_group_size, grant.limits.min_group_size or 0)
        rules = Rules(grade=grade, max_rows=min(m.max_rows, grant.limits.max_rows or m.max_rows), k=k,
                      mask_value=self.mask_value)
        return Context(grant, bp, rules)

    # --- GET /v1/schema ---------------------------------------------------------------------

    async def schema(self, grant: Grant, requested_product: str | None = None) -> ProductSchema:
        ctx = self.context(grant, requested_product)
        m = ctx.bp.mapping
        l3 = ctx.rules.aggregates_only
        async with self.sessionmaker() as session:
            state = await usage.current(session, grant.ent)
            terms = await self._privacy_terms(session, ctx) if l3 else None
        limits = grant.usage_limits()
        columns = [
            SchemaColumn(name=c.name, type=CATALOG_TYPES.get(ctx.bp.kind(c.name), "other"),
                         description=c.description, masked=c.name in m.masked,
                         groupable=c.name not in m.masked, filterable=c.name not in m.masked,
                         values=m.domains.get(c.name) if l3 else None,
                         bounds=list(m.bounds[c.name]) if l3 and c.name in m.bounds else None)
            for c in m.columns
        ]
        return ProductSchema(
            product_id=grant.product, title=m.title, grade=ctx.rules.grade,
            mode="aggregates" if l3 else "rows", columns=columns, operators=list(OPS),
            functions=[f for f in FNS if not (l3 and f in ("min", "max"))],
            max_rows=ctx.rules.max_rows, min_group_size=ctx.rules.k,
            noise_functions=list(NOISE_FNS) if l3 else [], privacy=terms,
            epsilon_budget=grant.limits.epsilon_budget,
            epsilon_remaining=state.epsilon_remaining(limits),
            query_quota=grant.limits.query_quota, queries_remaining=state.queries_remaining(limits))

    async def _privacy_terms(self, session: AsyncSession, ctx: Context) -> PrivacyTerms:
        m = ctx.bp.mapping
        assert m.privacy is not None
        state = await budget.product_budget(session, m.product_id, m.privacy)
        return PrivacyTerms(
            unit=self._unit(ctx), max_rows_per_person=m.max_rows_per_person, period=m.privacy.period,
            product_budget=BudgetState(**state.view()),
            delta_per_threshold_query=m.privacy.selection_delta if m.privacy.delta else 0.0,
            default_query_epsilon=ctx.grant.limits.query_epsilon or m.privacy.query_epsilon,
            min_query_epsilon=self.min_epsilon,
            mechanisms=["discrete Laplace (integer counts and sums)", "Laplace (float sums)",
                        "Laplace threshold (groups without public keys)"])

    @staticmethod
    def _unit(ctx: Context) -> str:
        m = ctx.bp.mapping
        return (f"one person ({m.person_column}), at most {m.max_rows_per_person} rows each, "
                f"per {m.privacy.period if m.privacy else 'period'}")

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
        if ctx.rules.aggregates_only:
            return await self._run_private(ctx, query)
        limits = grant.usage_limits()
        async with self.sessionmaker() as session:
            # Fail fast before touching the provider's database; the charge re-checks.
            usage.refuse_if_spent(await usage.current(session, grant.ent), limits, 0)
        answer = await self._execute(ctx, query)
        async with self.sessionmaker() as session, session.begin():
            state = await usage.charge(session, grant.ent, grant.product, limits, 0, len(answer.rows))
            usage_id = await self._report(session, ctx, query, len(answer.rows), 0, 0)
            await record_event(
                session, service="dataservice", action="dataservice.query.executed",
                subject_type="entitlement", subject_id=grant.ent, actor=grant.actor,
                details={**self._audit_details(grant, query), "rows": len(answer.rows),
                         "usage_id": usage_id})
        return QueryResult(columns=answer.columns, rows=answer.rows, truncated=answer.truncated,
                           epsilon_remaining=state.epsilon_remaining(limits),
                           queries_remaining=state.queries_remaining(limits))

    # --- L3: differentially private answers ---------------------------------------------------

    def _dp_plan(self, ctx: Context, query: Query) -> tuple[Statistics, DPPlan, float]:
        """Everything about the answer that does not depend on the data: its statistics, its
        groups (public or noisy threshold), its mechanisms and its charge."""
        m = ctx.bp.mapping
        assert m.privacy is not None
        eps = query.epsilon or ctx.grant.limits.query_epsilon or m.privacy.query_epsilon
        if eps < self.min_epsilon:
            raise QueryRefused(
                f"epsilon {eps:g} is below this service's minimum of {self.min_epsilon:g} per query; "
                "ask with a larger epsilon (smaller ones give answers made almost only of noise).",
                rule="epsilon-minimum", min_epsilon=self.min_epsilon)
        keys = public_keys(query, ctx.bp)
        threshold = keys is None
        if threshold and not m.privacy.delta:
            undeclared = [g for g in query.group_by if g not in m.domains]
            raise QueryRefused(
                f"Grouping by {', '.join(undeclared)} needs groups chosen by a noisy threshold, which "
                "this product does not offer (its delta budget is 0). Group by columns with declared "
                "values (GET /v1/schema lists them).", rule="public-keys-required")
        stats, outputs = statistics(query, ctx.bp, threshold)
        try:
            plan = privacy_plan(
                stats, budget.request_micro(eps), rows_per_person=m.max_rows_per_person,
                selection_delta_pico=budget.to_pico(m.privacy.selection_delta) if threshold else None)
        except CalibrationError as exc:
            raise QueryRefused(f"{exc}; ask with a larger epsilon.", rule="epsilon-minimum") from exc
        return Statistics(stats, outputs, keys), plan, eps

    async def _run_private(self, ctx: Context, query: Query) -> QueryResult:
        grant, m = ctx.grant, ctx.bp.mapping
        assert m.privacy is not None and ctx.rules.k is not None
        spec, plan, eps = self._dp_plan(ctx, query)
        limits = grant.usage_limits()
        privacy = m.privacy
        state = budget.terms(m.product_id, privacy)

        async def check_budgets() -> None:
            """Refuse before reading any data when a budget cannot pay (such a refusal costs
            nothing). Answers from cached aggregates skip it: the charge re-checks atomically
            and nothing is released when it refuses."""
            async with self.sessionmaker() as session:
                now, counters = await budget.standing(session, m.product_id, privacy, grant.ent)
            problem = budget.refuse_product(now, plan.epsilon_micro, plan.delta_pico)
            if problem is not None:
                raise problem
            usage.refuse_if_spent(counters, limits, plan.epsilon_micro)

        answer = await self._private_answer(ctx, query, spec, plan, state.period, check_budgets)
        async with self.sessionmaker() as session, session.begin():
            # Locks: the entitlement's row, then the product's (the same order in every
            # transaction, so no deadlock). The product's row is shared by every buyer: it is
            # updated last, so its lock is held only until the commit.
            used = await usage.charge(session, grant.ent, grant.product, limits, plan.epsilon_micro,
                                      len(answer.rows))
            usage_id = await self._report(session, ctx, query, len(answer.rows), answer.withheld,
                                          plan.epsilon_micro)
            await budget.record_charge(
                session, budget=state, catalog_product_id=grant.product, entitlement_id=grant.ent,
                organisation_id=grant.org, subject=grant.sub, jti=grant.jti,
                eps_micro=plan.epsilon_micro, delta_pico=plan.delta_pico, usage_id=usage_id)
            charged = await budget.charge_product(session, state, plan.epsilon_micro, plan.delta_pico)
            await record_event(
                session, service="dataservice", action="dataservice.query.executed",
                subject_type="entitlement", subject_id=grant.ent, actor=grant.actor,
                details={**self._audit_details(grant, query), "rows": len(answer.rows),
                         "suppressed_groups": answer.withheld, "usage_id": usage_id,
                         "charge": {"product": m.product_id, "period": charged.period,
                                    "epsilon": plan.epsilon_micro / usage.MICRO,
                                    "delta": plan.delta_pico / PICO,
                                    "product_epsilon_spent": charged.epsilon_spent_micro / usage.MICRO,
                                    "product_epsilon_total": charged.epsilon_total_micro / usage.MICRO}})
        if self.on_charge is not None:
            self.on_charge(m.product_id, grant.product)
        selection = plan.selection
        report = PrivacyReport(
            unit=self._unit(ctx), epsilon_requested=eps, epsilon_charged=plan.epsilon_micro / usage.MICRO,
            delta_charged=plan.delta_pico / PICO,
            groups="public" if selection is None else "noisy-threshold",
            threshold=None if selection is None else selection.threshold,
            min_group_size=ctx.rules.k, product_budget=BudgetState(**charged.view()),
            entitlement_epsilon_remaining=used.epsilon_remaining(limits))
        return QueryResult(
            columns=answer.columns, rows=answer.rows, suppressed_groups=answer.withheld,
            truncated=answer.truncated, noise=Noise(mechanism="opendp",
                                                    epsilon=plan.epsilon_micro / usage.MICRO),
            privacy=report, accuracy=[Accuracy.model_validate(a) for a in answer.accuracy],
            epsilon_remaining=used.epsilon_remaining(limits),
            queries_remaining=used.queries_remaining(limits))

    async def _private_answer(self, ctx: Context, query: Query, spec: Statistics, plan: DPPlan,
                              period: str, before_reading: Callable[[], Awaitable[None]]) -> DPAnswer:
        m = ctx.bp.mapping
        assert ctx.rules.k is not None
        try:
            async with asyncio.timeout(self.timeout):
                release = await self.releases.current(m.product_id, ctx.bp, period)
                exact = await self.cache.get(self.releases.own, release, query, spec.stats,
                                             before_reading=before_reading)
        except TimeoutError as exc:
            raise ServiceUnavailable(
                f"The answer took longer than {self.timeout:.0f} s (the first query of a period also "
                "prepares that period's contribution-bounded copy of the data, which continues in the "
                "background); nothing was charged. Try again in a minute.",
                headers={"Retry-After": "30"}) from exc
        except (ReleaseUnavailable, SQLAlchemyError) as exc:
            logger.error("L3 answer on product %s failed: %s", ctx.grant.product, exc)
            raise ServiceUnavailable(
                "The data could not be read (nothing was charged); try again later.") from exc
        noisy = release_noisy(plan, spec, exact)
        return assemble(plan, spec, noisy, query, release.bound, ctx.rules.k,
                        min(query.limit, ctx.rules.max_rows))

    # --- L1/L2 ------------------------------------------------------------------------------

    async def _execute(self, ctx: Context, query: Query) -> Answer:
        plan = build_plan(query, ctx.bp, ctx.rules)
        try:
            async with asyncio.timeout(self.timeout), self.data.engine.connect() as conn:
                rows = (await conn.execute(plan.stmt)).all()
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
        if query.is_aggregate:
            return assemble_aggregate(plan, rows, query, ctx.rules)
        return assemble_rows(plan, rows, query, ctx.rules)

    # --- usage, audit -------------------------------------------------------------------------

    async def _report(self, session: AsyncSession, ctx: Context, query: Query, rows: int,
                      withheld: int, eps_micro: int) -> str:
        record = usage.usage_record(
            entitlement_id=ctx.grant.ent, jti=ctx.grant.jti, product_id=ctx.grant.product,
            rows_returned=rows, suppressed_groups=withheld, epsilon_spent=eps_micro / usage.MICRO,
            occurred_at=utcnow())
        await usage.enqueue_usage(session, record)
        return str(record["usage_id"])

    @staticmethod
    def _audit_details(grant: Grant, query: Query) -> dict[str, Any]:
        text = query.model_dump_json(by_alias=True, exclude_none=True)
        return {"product_id": grant.product, "version": grant.version, "purpose": grant.purpose,
                "jti": grant.jti, "grade": grant.grade,
                "query": text if len(text) <= 4000 else text[:4000] + "…"}

    async def _audit_refusal(self, grant: Grant, query: Query, exc: ProblemError) -> None:
        details = {**self._audit_details(grant, query), "status": exc.status,
                   "problem": exc.problem, "reason": exc.detail[:500]}
        for key in ("rule", "budget"):
            if key in exc.extra:
                details[key] = exc.extra[key]
        try:
            async with self.sessionmaker() as session, session.begin():
                await record_event(
                    session, service="dataservice", action="dataservice.query.refused",
                    subject_type="entitlement", subject_id=grant.ent, actor=grant.actor,
                    outcome="denied" if exc.status < 500 else "failure", details=details)
        except SQLAlchemyError:
            logger.exception("could not record the refusal of a query by %s", grant.sub)
