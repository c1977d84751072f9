"""The provider's product mapping: which table or view each product exposes, and how.

A YAML or JSON file maps product ids to a table or view, the exposed columns, the
masked columns, the personal-identifier column used to count people, and the grade.
It is the provider's own statement of what may leave the building; the token's
claims can only narrow it, never widen it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Grade = Literal["L1_public", "L2_internal", "L3_sensitive", "L4_restricted"]
GRADES: tuple[Grade, ...] = ("L1_public", "L2_internal", "L3_sensitive", "L4_restricted")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
Period = Literal["month", "quarter", "year"]
#: Most values one public key list (``domains``) may declare.
MAX_DOMAIN_VALUES = 10_000


_RANK: dict[str, int] = {g: i for i, g in enumerate(GRADES)}


def grade_rank(grade: str) -> int:
    return _RANK[grade]


class ConfigError(ValueError):
    """The mapping file is unusable; the message says where and why."""


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Column name in the table or view.")
    description: str = ""

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} is not a plain column name (letters, digits, underscore)")
        return v


class PrivacyBudget(BaseModel):
    """The product-wide differential-privacy budget (L3), shared by every buyer.

    It is the provider's statement of how much one person may be exposed per release
    period: every L3 answer in the period spends from it, whoever asks."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(gt=0, le=1000, description="Total ε per release period, all buyers together.")
    delta: float = Field(
        default=0.0, ge=0, lt=1e-3,
        description="Total δ per release period; spent only by queries whose groups are chosen by a "
        "noisy threshold (group columns without a public key list). 0 = such queries are refused.")
    period: Period = Field(default="month", description="Release period: the budget renews (and a "
                           "fresh contribution-bounded copy of the data is made) at its start.")
    query_epsilon: float = Field(
        default=0.1, gt=0, le=10,
        description="ε of a query that names none and whose plan sets no default.")
    selection_delta: float = Field(
        default=1e-9, gt=0, lt=1e-3,
        description="δ one threshold-selected query spends (charged to the product's δ).")

    @model_validator(mode="after")
    def _fits(self) -> PrivacyBudget:
        if self.query_epsilon > self.epsilon:
            raise ValueError("query_epsilon is larger than the whole budget epsilon")
        if self.delta and self.selection_delta > self.delta:
            raise ValueError("selection_delta is larger than the whole budget delta")
        return self


Scalar = str | int | float | bool


class ProductMapping(BaseModel):
    """One product as the provider maps it onto their database."""

    model_config = ConfigDict(extra="forbid")
    product_id: str
    title: str = ""
    table: str = Field(description="Table or view name (optionally schema.table).")
    grade: Grade
    columns: list[ColumnSpec] = Field(min_length=1, description="Columns buyers may see.")
    masked: list[str] = Field(
        default_factory=list,
        description="Exposed columns whose values are never returned in clear (and cannot be "
        "filtered, grouped, ordered or aggregated on).",
    )
    person_column: str | None = Field(
        default=None,
        description="Personal-identifier (pseudonym) column used only to count distinct people; "
        "never selectable, groupable or filterable. Required for L3 products.",
    )
    min_group_size: int = Field(
        default=10, ge=2, description="k for L3 products: groups whose *noisy* count is below k "
        "are withheld (post-processing of the differentially private answer).")
    max_rows: int = Field(default=1000, ge=1, description="Most rows one answer may carry.")
    max_rows_per_person: int = Field(
        default=1, ge=1, le=1000,
        description="Most rows one person contributes to L3 answers. The service enforces it: the "
        "contribution-bounded copy keeps at most this many rows per person (the sensitivity of "
        "every differentially private statistic follows from it).",
    )
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Clamping range per numeric column, needed for noisy sum and avg.",
    )
    domains: dict[str, list[Scalar]] = Field(
        default_factory=dict,
        description="Public key lists per column (L3): grouping by columns that all have one "
        "releases every combination (noisy, zero counts included) instead of choosing the groups "
        "by a noisy threshold. They must come from public knowledge, never from the data.",
    )
    privacy: PrivacyBudget | None = Field(
        default=None, description="Product-wide privacy budget (required for L3).")

    @field_validator("columns", mode="before")
    @classmethod
    def _plain_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": c} if isinstance(c, str) else c for c in v]
        if isinstance(v, dict):
            return [{"name": k, "description": d or ""} for k, d in v.items()]
        return v

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        if not all(IDENTIFIER.match(part) for part in v.split(".")) or v.count(".") > 1:
            raise ValueError(f"{v!r} is not a plain table name (optionally schema.table)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ProductMapping:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("a column is listed twice in columns")
        unknown = [m for m in self.masked if m not in names]
        if unknown:
            raise ValueError(f"masked columns {unknown} are not in columns")
        if self.grade == "L4_restricted":
            raise ValueError(
                "L4_restricted data identifies people or is core data and cannot be offered "
                "through a data service; de-identify it and grade it L3_sensitive"
            )
        if self.grade == "L3_sensitive" and not self.person_column:
            raise ValueError("L3_sensitive products need person_column (the privacy unit: one person)")
        for col, values in self.domains.items():
            if col not in names or col in self.masked:
                raise ValueError(f"domains given for {col!r}, which is not an exposed, unmasked column")
            if not values or len(values) > MAX_DOMAIN_VALUES:
                raise ValueError(f"domains of {col!r}: give 1 to {MAX_DOMAIN_VALUES} values")
            if len(set(values)) != len(values):
                raise ValueError(f"domains of {col!r}: a value is listed twice")
        if self.person_column:
            if not IDENTIFIER.match(self.person_column):
                raise ValueError(f"person_column {self.person_column!r} is not a plain column name")
            if self.person_column in names:
                raise ValueError(
                    "person_column must not also be an exposed column: it is never returned"
                )
        if self.grade == "L3_sensitive" and self.privacy is None:
            raise ValueError("L3_sensitive products need a privacy block (epsilon per release "
                             "period, shared by every buyer)")
        for col, (lo, hi) in self.bounds.items():
            if col not in names:
                raise ValueError(f"bounds given for {col!r}, which is not in columns")
            if lo > hi:
                raise ValueError(f"bounds of {col!r}: lower {lo} is above upper {hi}")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


class ProductCatalog(BaseModel):
    products: dict[str, ProductMapping]


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def load_products(path: str | Path, rename: dict[str, str] | None = None) -> dict[str, ProductMapping]:
    """Read and check the mapping. ``rename`` maps ids in the file to the ids to use
    (the demo mapping's ids are configurable)."""
    p = Path(path)
    try:
        raw = _parse(p)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the products file {p}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("products"), dict):
        raise ConfigError(f"{p}: expected a top-level 'products' mapping of product id → settings")
    entries: dict[str, Any] = {}
    for pid, entry in raw["products"].items():
        new_id = (rename or {}).get(pid, pid)
        entries[new_id] = {**(entry or {}), "product_id": new_id}
    try:
        catalog = ProductCatalog.model_validate({"products": entries})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{p}: {problems}") from exc
    return catalog.products
