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
        description="L3 only: answer with Laplace noise at this privacy cost, charged to the "
        "entitlement's epsilon budget.",
    )

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggregates or self.group_by)


class Noise(BaseModel):
    mechanism: Literal["laplace"] = "laplace"
    epsilon: float


class QueryResult(BaseModel):
    columns: list[str] = Field(examples=[["district", "count", "avg_cost"]])
    rows: list[list[Any]] = Field(examples=[[["Altstadt", 812, 310.4]]])
    suppressed_groups: int = Field(
        default=0, description="Groups withheld because fewer than k people are in them "
        "(or withheld so that a small group cannot be worked out from the others).")
    truncated: bool = Field(default=False, description="More rows matched than were returned.")
    noise: Noise | None = None
    epsilon_remaining: float | None = Field(
        default=None, description="Privacy budget left on the entitlement (null: no budget).")
    queries_remaining: int | None = Field(
        default=None, description="Queries left on the entitlement (null: unlimited).")


class SchemaColumn(BaseModel):
    name: str
    type: str = Field(description="int, float, str, bool, date, datetime or other.")
    description: str = ""
    masked: bool = Field(description="Values are returned masked; not usable in filters, "
                         "groups, ordering or aggregates.")
    groupable: bool
    filterable: bool


class ProductSchema(BaseModel):
    """What the caller's token may query."""

    product_id: str
    title: str
    grade: str = Field(description="The stricter of the token's and the provider's grade.")
    mode: Literal["rows", "aggregates"] = Field(
        description="`rows`: row and aggregate queries; `aggregates`: aggregate queries only.")
    columns: list[SchemaColumn]
    operators: list[str]
    functions: list[str]
    max_rows: int
    min_group_size: int | None = Field(description="k: smaller groups are suppressed (L3).")
    noise_functions: list[str] = Field(description="Functions answerable with Laplace noise.")
    epsilon_budget: float | None
    epsilon_remaining: float | None
    query_quota: int | None
    queries_remaining: int | None
