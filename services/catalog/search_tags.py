"""PostgreSQL: a listed tag search's price page and facets from ``listed_product_tags``.

A tag search without words (``tag=…``, perhaps with a currency and price cap, category,
grade or plan kind) read every tagged product's 1.6 KB ``products`` row twice from the tag
index — once to filter by price and sort, once for the facets — because the planner does not
walk the price index in order with a semi-join on the tag. ``listed_product_tags``
(migration 0011) holds one narrow row per (tag, listed product) with the columns those
filters, the order and the facets use, indexed (tag, currency, min_price, pk) with the facet
columns included: the price page is the first ``:want`` entries of one index range (then 21
product rows by primary key) and the facets an index-only scan of the same range. Matches,
order, cursors and counts are those of the general path in search.py (tests compare them).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)

from services.catalog.models import ListedProductTag, Product
from services.catalog.search_pg import HIT_COLUMNS, KINDS
from services.catalog.statuses import ProductStatus

if TYPE_CHECKING:
    from services.catalog.search import SearchQuery

_TAGS = ListedProductTag.__table__
_products = Product.__table__


def filters(query: SearchQuery) -> tuple[str, ...] | None:
    """A listed search by tag without words or provider: the names of its other filters (see
    :func:`_where`); None for any other search (its matches are not all in the table's rows).
    A search whose words are all stop words is no tag search: it matches nothing."""
    words = query.q and query.q.strip()
    if query.status != ProductStatus.LISTED or not query.tag or words or query.provider:
        return None
    return tuple(name for name, value in (
        ("category", query.category), ("grade", query.grade), (f"has_{query.plan_kind}", query.plan_kind),
        ("currency", query.currency), ("max_price", query.max_price is not None)) if value)


def params(query: SearchQuery) -> dict[str, Any]:
    """The bound parameters of :func:`facet_groups` and :func:`price_page` (tag as stored)."""
    return {"tag": (query.tag or "").strip().lower(), "category": query.category, "grade": query.grade,
            "currency": query.currency, "max_price": query.max_price}


def _where(filters: tuple[str, ...]) -> list[ColumnElement[bool]]:
    """``:tag`` and each filter (``category``, ``grade``, ``currency``: equal to the parameter of
    that name; ``max_price``: ``min_price <= :max_price``; ``has_<kind>``: offers that kind)."""
    t = _TAGS.c
    where = [t.tag == bindparam("tag", type_=String)]
    for name in filters:
        if name.startswith("has_"):
            where.append(t[name].is_(True))
        elif name == "max_price":
            where.append(t.min_price <= bindparam("max_price", type_=BigInteger))
        else:
            where.append(t[name] == bindparam(name, type_=String))
    return where


@functools.cache
def facet_groups(filters: tuple[str, ...]) -> Select[Any]:
    """The (category, grade, count, count per plan kind...) groups of the matches, as
    search._facets gives them. Built once per filter set with bound parameters."""
    t = _TAGS.c
    one: ColumnElement[Any] = literal_column("1")
    return select(t.category, t.grade, func.count(), *(
        func.count(one).filter(t[f"has_{k}"].is_(True)) for k in KINDS
    )).where(*_where(filters)).group_by(t.category, t.grade)


@functools.cache
def price_page(filters: tuple[str, ...], after: bool) -> Select[Any]:
    """The first ``:want`` matches by (min_price, pk), after (``:p``, ``:k``) when ``after``:
    the keys from the index range (``filters`` must fix the currency, so the range is in
    price order), then their product rows. Built once per filter set and cursor presence."""
    t = _TAGS.c
    keys = select(t.pk, t.min_price).where(*_where(filters))
    if after:
        p, k = bindparam("p", type_=BigInteger), bindparam("k", type_=BigInteger)
        keys = keys.where(or_(t.min_price > p, and_(t.min_price == p, t.pk > k)))
    page = keys.order_by(t.min_price, t.pk).limit(bindparam("want", type_=Integer)).subquery("k")
    return (select(*HIT_COLUMNS).select_from(page.join(_products, _products.c.pk == page.c.pk))
            .order_by(page.c.min_price, page.c.pk))
