"""The structured query language of the data service (never raw SQL) and its answers.

Operators and functions are plain strings here and checked by the compiler, so an
unknown one is a 422 problem that names it and lists the allowed ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "between")
FNS = ("count", "count_distinct", "sum", "avg", "min", "max")
MAX_IN_VALUES = 1000

_Name = Field(min_length=1, max_length=128)


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(min_length=1, max_length=128, examples=["year"])
    op: str = Field(min_length=1, max_length=32, description=f"One of: {', '.join(OPS)}.",
                    examples=["eq"])
    value: Any = Field(
        description="A number, string or boolean; a list for `in` (up to 1000 values) and a "
        "[low, high] pair for `between` (inclusive).",
        examples=[2024],
    )


class Aggregate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    fn: str = Field(min_length=1, max_length=32, description=f"One of: {', '.join(FNS)}.",
                    examples=["avg"])
    column: str | None = Field(default=None, max_length=128,
                               description="Required except for `count` (which counts rows).",
                               examples=["cost_eur"])
    as_: str | None = Field(default=None, alias="as", max_length=63,
                            pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="Output column name (default: fn_column).",
                            examples=["avg_cost"])

    @property
    def output_name(self) -> str:
        if self.as_:
            return self.as_
        return self.fn if self.column is None else f"{self.fn}_{self.column}"


class OrderBy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(min_length=1, max_length=128,
                        description="A selected or grouped column, or an aggregate's output name.")
    dir: Literal["asc", "desc"] = "asc"


class Query(BaseModel):
    """A structured query. Without aggregates and group_by it is a row query (L1/L2 only)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "select": ["district"],
            "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "cost_eur", "as": "avg_cost"}],
            "where": [{"column": "year", "op": "eq", "value": 2024}],
            "group_by": ["district"],
            "order_by": [{"column": "district", "dir": "asc"}],
            "limit": 100,
        }]},
    )
    product: str | None = Field(
        default=None, max_length=64,
        description="Optional: the product you mean to query; refused unless it is the token's.",
    )
    select: list[str] = Field(default_factory=list, max_length=64,
                              description="Columns to return (row queries: default all exposed).")
    aggregates: list[Aggregate] = Field(default_factory=list, max_length=16)
    where: list[Filter] = Field(default_factory=list, max_length=32,
                                description="Filters, all of which must hold (AND).")
    group_by: list[str] = Field(default_factory=list, max_length=8)
    order_by: list[OrderBy] = Field(default_factory=list, max_length=8)
    limit: int = Field(default=100, ge=1, le=100_000,
                       description="Most rows wanted; the token's and product's caps also apply.")
    epsilon: float | None = Field(
        default=None, gt=0, le=10,
        description="L3 only: the privacy cost of this answer (differential privacy, per person), "
        "charged to the product's budget shared by every buyer and to the entitlement's own share. "
        "Omitted: the plan's default per query. Smaller epsilon = more noise.",
        examples=[0.5],
    )

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggregates or self.group_by)


class Noise(BaseModel):
    mechanism: str = Field(examples=["opendp"])
    epsilon: float = Field(description="The epsilon this answer was charged (OpenDP's privacy map).")


class Accuracy(BaseModel):
    """How noisy one output column is (L3)."""

    model_config = ConfigDict(populate_by_name=True)
    column: str
    statistic: str = Field(examples=["count", "sum(cost_eur)", "mean(cost_eur)"])
    mechanism: str = Field(examples=["discrete-laplace (opendp make_laplace, integers)"])
    epsilon: float = Field(description="Epsilon spent on this column's statistic(s).")
    scale: float | None = Field(description="Noise scale (Laplace b); null for a mean.")
    ci95_half_width: float | None = Field(
        description="Each value is within this of the true one with 95 % probability (OpenDP "
        "accuracy helper); null for a mean, which has intervals per row.")
    ci95_intervals: list[list[float]] | None = Field(
        default=None, description="Means only: a 95 % interval per returned row, in row order.")
    from_: list[dict[str, Any]] | None = Field(
        default=None, alias="from", description="Means only: the sum and count it is made of.")


class BudgetState(BaseModel):
    """A product's privacy budget in one release period, shared by every buyer."""

    period: str = Field(examples=["2026-11"])
    renews_at: str = Field(examples=["2026-12-01T00:00:00Z"])
    epsilon_total: float
    epsilon_spent: float
    epsilon_remaining: float
    delta_total: float
    delta_spent: float


class PrivacyReport(BaseModel):
    """What an L3 answer cost and what is left (the guarantee is per person per period)."""

    unit: str = Field(examples=["one person (person_column), at most 6 rows each"])
    epsilon_requested: float
    epsilon_charged: float = Field(description="OpenDP's privacy map of the mechanisms, rounded up.")
    delta_charged: float
    groups: Literal["public", "noisy-threshold"] = Field(
        description="`public`: every declared key combination is released (zero counts too); "
        "`noisy-threshold`: only groups whose noisy count cleared `threshold`.")
    threshold: int | None = None
    min_group_size: int = Field(description="k: groups whose noisy count is below k are withheld "
                                "(post-processing).")
    product_budget: BudgetState
    entitlement_epsilon_remaining: float | None = Field(
        description="What is left of this entitlement's own share (null: no share limit).")


class QueryResult(BaseModel):
    columns: list[str] = Field(examples=[["district", "count", "avg_cost"]])
    rows: list[list[Any]] = Field(examples=[[["Altstadt", 812, 310.4]]])
    suppressed_groups: int = Field(
        default=0, description="L3: groups withheld because their *noisy* count is below k.")
    truncated: bool = Field(default=False, description="More rows matched than were returned.")
    noise: Noise | None = None
    privacy: PrivacyReport | None = Field(default=None, description="L3: the charge and budgets.")
    accuracy: list[Accuracy] | None = Field(
        default=None, description="L3: mechanism, scale and 95 % accuracy per output column.")
    epsilon_remaining: float | None = Field(
        default=None, description="Privacy budget left on the entitlement (null: no budget).")
    queries_remaining: int | None = Field(
        default=None, description="Queries left on the entitlement (null: unlimited).")


class SchemaColumn(BaseModel):
    name: str
    type: str = Field(description="The catalog's type names: string, integer, number, boolean, "
                      "date, datetime (or other).")
    description: str = ""
    masked: bool = Field(description="Values are returned masked; not usable in filters, "
                         "groups, ordering or aggregates.")
    groupable: bool
    filterable: bool
    values: list[Any] | None = Field(
        default=None, description="L3: the public key list (grouping by it releases every value).")
    bounds: list[float] | None = Field(
        default=None, description="L3: clamping range; sums and means use values clamped to it.")


class PrivacyTerms(BaseModel):
    """How an L3 product answers and what its budgets are."""

    unit: str
    max_rows_per_person: int
    period: str
    product_budget: BudgetState
    delta_per_threshold_query: float = Field(
        description="δ a query spends when its groups are chosen by a noisy threshold.")
    default_query_epsilon: float = Field(description="Charged when a query names no epsilon.")
    min_query_epsilon: float
    mechanisms: list[str]


class ProductSchema(BaseModel):
    """What the caller's token may query."""

    product_id: str = Field(description="The catalog product the token was issued for.")
    title: str
    grade: str = Field(description="The stricter of the token's and the provider's grade.")
    mode: Literal["rows", "aggregates"] = Field(
        description="`rows`: row and aggregate queries; `aggregates`: aggregate queries only.")
    columns: list[SchemaColumn]
    operators: list[str]
    functions: list[str]
    max_rows: int
    min_group_size: int | None = Field(description="k (L3): groups whose noisy count is below k "
                                       "are withheld.")
    noise_functions: list[str] = Field(description="Functions with differentially private answers.")
    privacy: PrivacyTerms | None = Field(default=None, description="L3 only.")
    epsilon_budget: float | None = Field(description="The entitlement's own share of epsilon.")
    epsilon_remaining: float | None
    query_quota: int | None
    queries_remaining: int | None
