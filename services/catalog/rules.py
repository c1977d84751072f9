"""The mission's product rules (DESIGN §3), each refusal naming its rule.

Plain functions over a :class:`ProductSpec`; no database, no FastAPI. The
lifecycle calls :func:`check_product` when a draft is saved and again when it
is submitted, so a provider learns about a problem as early as possible and
nothing unlistable is ever published.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from services.catalog.currencies import ISO_4217
from services.catalog.schemas import DataSchema, PlanIn, ProductSpec
from shared.errors import RuleViolation

GRADE_ORDER: dict[str, int] = {"L1_public": 1, "L2_internal": 2, "L3_sensitive": 3, "L4_restricted": 4}
DEFAULT_MAX_ROWS = 1000
MAX_SAMPLE_ROWS = 20


def refuse(rule: str, detail: str, **extra: Any) -> RuleViolation:
    return RuleViolation(detail, rule=rule, **extra)


def grade_at_least(grade: str, floor: str) -> bool:
    return GRADE_ORDER[grade] >= GRADE_ORDER[floor]


def check_product(spec: ProductSpec, source_grades: Mapping[str, str | None]) -> None:
    """Raise :class:`RuleViolation` for the first rule ``spec`` breaks.

    ``source_grades`` maps each id in ``derived_from`` to its grade, or None
    when the caller may not see such a product.
    """
    check_grade_and_personal_data(spec)
    check_delivery(spec)
    check_schema_and_sample(spec)
    check_derivation(spec, source_grades)
    check_plans(spec.plans)


def check_grade_and_personal_data(spec: ProductSpec) -> None:
    if spec.personal_data == "identifiable":
        raise refuse(
            "identifiable-personal-data-not-listable",
            "Products with identifiable personal data cannot be listed on Sluice. De-identify the data "
            "(e.g. to k-anonymity), declare personal_data 'deidentified' with an attestation and grade "
            "L3_sensitive, or remove the personal data.",
        )
    if spec.grade == "L4_restricted":
        raise refuse(
            "l4-restricted-not-listable",
            "L4_restricted data (identifies people, or core data) cannot be listed. Only L1_public, "
            "L2_internal and, after regulator review, L3_sensitive products are allowed.",
        )
    if spec.personal_data == "deidentified":
        if not grade_at_least(spec.grade, "L3_sensitive"):
            raise refuse(
                "deidentified-requires-l3",
                f"De-identified personal data must be graded at least L3_sensitive, not {spec.grade}: "
                "re-identification risk stays, so it is delivered only as aggregates after review.",
            )
        if spec.deidentification is None:
            raise refuse(
                "deidentified-requires-attestation",
                "De-identified personal data needs a de-identification attestation: give "
                "`deidentification` with method, k, date and attested_by.",
            )
        if spec.deidentification.date > date.today():
            raise refuse(
                "attestation-date-not-in-future",
                "The de-identification attestation is dated in the future; give the date it was made.",
            )
    elif spec.deidentification is not None:
        raise refuse(
            "attestation-only-for-deidentified",
            "A de-identification attestation only applies to personal_data 'deidentified'; "
            "remove `deidentification` or change the declaration.",
        )
    personal = [f.name for f in spec.data_schema.fields if f.personal]
    if personal and spec.personal_data == "none":
        raise refuse(
            "personal-fields-need-declaration",
            f"The schema flags personal fields ({', '.join(personal)}) but personal_data is 'none'. "
            "Declare 'deidentified' (with an attestation, grade L3) or remove the personal flag.",
            fields=personal,
        )


def check_delivery(spec: ProductSpec) -> None:
    url = spec.delivery.data_service_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise refuse(
            "data-service-url-absolute",
            f"delivery.data_service_url must be an absolute http(s) URL without query or fragment "
            f"(it becomes the audience of data-access tokens); got {url!r}.",
        )
    if spec.grade == "L3_sensitive" and spec.delivery.mode != "aggregates":
        raise refuse(
            "l3-aggregates-only",
            "L3_sensitive products are delivered as aggregates only: set delivery.mode to 'aggregates'.",
        )
    if spec.delivery.epsilon_budget is not None and spec.grade != "L3_sensitive":
        raise refuse(
            "epsilon-budget-l3-only",
            "A differential-privacy epsilon budget applies to L3_sensitive products only; remove "
            "delivery.epsilon_budget.",
        )
    for i, plan in enumerate(spec.plans):
        if (plan.epsilon is not None or plan.query_epsilon is not None) and spec.grade != "L3_sensitive":
            raise refuse(
                "epsilon-budget-l3-only",
                f"plans[{i}] sells epsilon, which applies to L3_sensitive products only (their answers "
                "are differentially private); remove epsilon and query_epsilon from the plan.")
        granted = plan.epsilon if plan.epsilon is not None else spec.delivery.epsilon_budget
        if plan.query_epsilon is not None and granted is not None and plan.query_epsilon > granted:
            raise refuse(
                "query-epsilon-within-plan",
                f"plans[{i}].query_epsilon ({plan.query_epsilon}) is more than the plan grants in all "
                f"({granted}); lower it or raise the plan's epsilon.")
    att = spec.deidentification
    if (
        spec.grade == "L3_sensitive"
        and att is not None
        and spec.delivery.min_group_size is not None
        and spec.delivery.min_group_size < att.k
    ):
        raise refuse(
            "min-group-size-at-least-k",
            f"delivery.min_group_size ({spec.delivery.min_group_size}) is below the attestation's "
            f"k ({att.k}); groups smaller than k would undo the de-identification.",
        )


_TYPE_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "date": lambda v: isinstance(v, str) and _parses(date.fromisoformat, v),
    "datetime": lambda v: isinstance(v, str) and _parses(datetime.fromisoformat, v),
}


def _parses(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def check_schema_and_sample(spec: ProductSpec) -> None:
    names = [f.name for f in spec.data_schema.fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise refuse("schema-field-names-unique",
                     f"Schema field names must be unique; repeated: {', '.join(duplicates)}.")
    if spec.sample is None or not spec.sample:
        return
    if spec.grade == "L3_sensitive":
        raise refuse(
            "l3-no-sample",
            "L3_sensitive products cannot publish sample rows (they are delivered as aggregates "
            "only); remove `sample`.",
        )
    validate_sample(spec.data_schema, spec.sample)


def validate_sample(schema: DataSchema, sample: list[dict[str, Any]]) -> None:
    fields = {f.name: f for f in schema.fields}
    for i, row in enumerate(sample[:MAX_SAMPLE_ROWS]):
        unknown = sorted(set(row) - set(fields))
        if unknown:
            raise refuse(
                "sample-matches-schema",
                f"Sample row {i} has fields that are not in the schema: {', '.join(unknown)}.",
                row=i,
            )
        for name, value in row.items():
            field = fields[name]
            if value is None:
                continue
            if field.masked:
                raise refuse(
                    "sample-matches-schema",
                    f"Sample row {i}: field {name!r} is masked, so its sample value must be null.",
                    row=i, field=name,
                )
            if not _TYPE_CHECKS[field.type](value):
                raise refuse(
                    "sample-matches-schema",
                    f"Sample row {i}: field {name!r} should be of type {field.type}, got {value!r}.",
                    row=i, field=name,
                )


def check_derivation(spec: ProductSpec, source_grades: Mapping[str, str | None]) -> None:
    unknown = [pid for pid in spec.derived_from if source_grades.get(pid) is None]
    if unknown:
        raise refuse(
            "derived-from-known-products",
            f"derived_from names products that do not exist or that you cannot see: "
            f"{', '.join(unknown)}.",
            products=unknown,
        )
    if not spec.derived_from:
        return
    highest = max(
        (g for g in source_grades.values() if g is not None), key=lambda g: GRADE_ORDER[g]
    )
    if not grade_at_least(spec.grade, highest):
        raise refuse(
            "derived-grade-at-least-sources",
            f"A derived product inherits the highest grade of its sources: grade it at least "
            f"{highest}, not {spec.grade}.",
            minimum_grade=highest,
        )


def _money(value: int | float, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(
            "price-integer-minor-units",
            f"{where} must be an integer number of minor units (e.g. 4990 for 49.90 EUR), not {value!r}.",
        )
    if value < 0:
        raise refuse("price-non-negative", f"{where} cannot be negative (got {value}).")
    return value


def check_plans(plans: list[PlanIn]) -> None:
    currencies = set()
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise refuse("plan-names-unique", "Plan names must be unique within a product.")
    for i, plan in enumerate(plans):
        where = f"plans[{i}]"
        if plan.currency not in ISO_4217:
            raise refuse(
                "currency-iso-4217",
                f"{where}.currency {plan.currency!r} is not an ISO 4217 currency code (e.g. EUR, USD).",
            )
        currencies.add(plan.currency)
        price = _money(plan.price, f"{where}.price")
        per_query = _money(plan.price_per_query, f"{where}.price_per_query")
        for j, tier in enumerate(plan.tiers):
            _money(tier.unit_price, f"{where}.tiers[{j}].unit_price")
        check_plan_shape(plan, where, price, per_query)
    if len(currencies) > 1:
        raise refuse(
            "plans-single-currency",
            f"All plans of a product use one currency; got {', '.join(sorted(currencies))}.",
        )


def check_plan_shape(plan: PlanIn, where: str, price: int, per_query: int) -> None:
    def bad(detail: str) -> RuleViolation:
        return refuse("plan-shape", f"{where} ({plan.kind}): {detail}")

    if plan.kind == "free" and (price or per_query or plan.tiers):
        raise bad("a free plan has price 0 and no per-query prices.")
    if plan.kind == "free" and (plan.trial_days or plan.trial_queries):
        raise bad("a free plan needs no trial.")
    if plan.kind in ("free", "one_time"):
        if plan.period is not None:
            raise bad("only subscription and metered plans have a period.")
        if plan.access_days is None:
            raise bad("give access_days: how long a purchase gives access.")
    if plan.kind == "one_time" and price <= 0:
        raise bad("a one-off plan needs a price above 0 (use a free plan otherwise).")
    if plan.kind == "subscription":
        if plan.period is None:
            raise bad("give period 'month' or 'year'.")
        if price <= 0:
            raise bad("a subscription needs a price per period above 0.")
    if plan.kind != "metered" and (per_query or plan.tiers or plan.included_queries):
        raise bad("price_per_query, tiers and included_queries belong to metered plans.")
    if plan.kind == "metered":
        if plan.period is None:
            raise bad("give the billing period 'month' or 'year'.")
        if per_query and plan.tiers:
            raise bad("give either price_per_query or tiers, not both.")
        if not per_query and not plan.tiers:
            raise bad("give price_per_query or tiers.")
        last = 0
        for j, tier in enumerate(plan.tiers):
            is_last = j == len(plan.tiers) - 1
            if tier.up_to is None and not is_last:
                raise bad("only the last tier may be open-ended (up_to null).")
            if tier.up_to is not None and tier.up_to <= last:
                raise bad("tier up_to values must increase.")
            if is_last and tier.up_to is not None:
                raise bad("the last tier must be open-ended (up_to null).")
            last = tier.up_to or last
    if plan.query_quota is not None and plan.included_queries > plan.query_quota:
        raise bad("included_queries cannot exceed query_quota.")


def check_submittable(spec: ProductSpec) -> None:
    """Rules that apply when a product goes public (not while drafting)."""
    if not spec.plans:
        raise refuse(
            "plans-required",
            "A product needs at least one pricing plan before it can be submitted; add one to `plans`.",
        )


def guardrails_for(spec: ProductSpec) -> dict[str, Any]:
    """The limits every entitlement to this version inherits."""
    d = spec.delivery
    if spec.grade == "L3_sensitive":
        k = spec.deidentification.k if spec.deidentification else 1
        min_group = max(k, d.min_group_size or 0)
    else:
        min_group = d.min_group_size or 1
    return {
        "max_rows": d.max_rows or DEFAULT_MAX_ROWS,
        "min_group_size": min_group,
        "epsilon_budget": d.epsilon_budget if spec.grade == "L3_sensitive" else None,
    }


_PLAN_ID = re.compile(r"^plan_[0-9a-f]{8,32}$")


def normalise_plans(plans: list[PlanIn], existing_ids: set[str]) -> list[dict[str, Any]]:
    """Plans in the contract's `Plan` shape; ids are kept only when they name an existing plan."""
    out = []
    for plan in plans:
        pid = plan.id if plan.id and _PLAN_ID.match(plan.id) and plan.id in existing_ids else None
        out.append(
            {
                "id": pid or f"plan_{secrets.token_hex(8)}",
                "name": plan.name,
                "kind": plan.kind,
                "currency": plan.currency,
                "price": int(plan.price),
                "period": plan.period,
                "price_per_query": int(plan.price_per_query),
                "included_queries": plan.included_queries,
                "tiers": [{"up_to": t.up_to, "unit_price": int(t.unit_price)} for t in plan.tiers],
                "query_quota": plan.query_quota,
                "access_days": plan.access_days,
                "trial_days": plan.trial_days,
                "trial_queries": plan.trial_queries,
                "epsilon": plan.epsilon,
                "query_epsilon": plan.query_epsilon,
            }
        )
    return out


def normalise_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        t = tag.strip().lower()[:40]
        if t and t not in seen:
            seen.append(t)
    return seen
