"""PostgreSQL-only search statements that read less than the general ones in search.py.

- :func:`title_word_window`: a one-word search's tier-1 ranking window from the maintained
  ``listed_title_words`` (migration 0010): one btree range already in ``listed_at DESC, pk
  DESC`` order, where the title index needs a heap visit per match (a common word is in ~1,000
  titles, each on its own page of 1.6 KB-wide ``products`` rows) and a sort.
- :func:`one_pass`: a relevance page and its facets in one statement, from one pass over the
  matches, for a listed search with several words, or with words and category, grade or plan
  kind filters (shapes the maintained counts cannot answer). Its facets read every match
  anyway; done apart, the page then read the same matches again for each tier's window (the
  newest ``RANK_WINDOW`` by ``listed_at``: a heap visit per match), in 2-3 more round trips.
  Here the matches' narrow columns are read once into a CTE; the facet groups and the page
  (both tiers, their windows by rank, then the rest newest first: the very order of
  ``search._relevance_page``) are computed from it, and only the page rows and the window rows
  the page reaches are read from ``products`` again. The matches come from ``listed_search``
  (migration 0012): the same columns in a ~125 B row (vectors out of line) instead of a 1.6 KB
  ``products`` row, so the ~10,000 rows of a common pair at 1M stay in shared_buffers.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY

from services.catalog.models import ListedSearch, ListedTitleWord, Product

_products = Product.__table__
_TITLE_WORDS = ListedTitleWord.__table__
_LISTED = ListedSearch.__table__
KINDS = ("free", "one_time", "subscription", "metered")
#: What a search hit shows (services/catalog/search.py builds its items from these).
HIT_COLUMNS = [
    _products.c.pk, _products.c.id, _products.c.provider_org, _products.c.slug, _products.c.title,
    _products.c.summary, _products.c.category, _products.c.tags_text, _products.c.grade,
    _products.c.status, _products.c.latest_version, _products.c.currency, _products.c.min_price,
    _products.c.has_free, _products.c.has_one_time, _products.c.has_subscription,
    _products.c.has_metered, _products.c.listed_at,
]


def title_word_window(word: Any, window: Any) -> Select[Any]:
    """The newest ``window`` listed products with ``word`` in their title or tags. Selects
    nothing when ``word`` is not exactly one lexeme (then its tsquery is not a one-lexeme
    match, and the caller asks the title index)."""
    t = _TITLE_WORDS.c
    lexemes = func.tsvector_to_array(func.to_tsvector(literal_column("'english'"), word), type_=ARRAY(Text))
    lexeme = select(lexemes[1]).where(func.array_length(lexemes, 1) == 1).scalar_subquery()
    return select(t.pk).where(t.lexeme == lexeme).order_by(t.listed_at.desc(), t.pk.desc()).limit(window)


@functools.cache
def title_word_page() -> Select[Any]:
    """Rows ``:offset .. :offset + :want`` of the :func:`title_word_window` of ``:word``
    (``:window`` products) by rank, then pk. Built once with bound parameters, like
    :func:`one_pass`."""
    c = _products.c
    word = bindparam("word", type_=Text)
    rank = func.ts_rank_cd(literal_column("products.search_vector"),
                           func.websearch_to_tsquery(literal_column("'english'"), word))
    window = title_word_window(word, bindparam("window", type_=Integer))
    return (select(*HIT_COLUMNS).where(c.pk.in_(window)).order_by(rank.desc(), c.pk.desc())
            .offset(bindparam("offset", type_=Integer)).limit(bindparam("want", type_=Integer)))


@functools.cache
def one_pass(filters: tuple[str, ...] = ()) -> Select[Any]:
    """Rows ``:offset .. :offset + :want`` of the relevance order of the listed products
    matching ``:words`` (``:window``: the ranking window) and ``filters`` (``category``:
    ``:category``, ``grade``: ``:grade``, ``has_<plan kind>``: offers that kind), each with
    ``facet_groups``: the (category, grade, count, count per plan kind...) groups of every
    match, as JSON text.

    Built once per filter set with bound parameters (building it per search cost ~2 ms of the
    event loop's CPU)."""
    c = _LISTED.c
    where = [_filter(_LISTED, name) for name in filters]
    tsquery = func.websearch_to_tsquery(literal_column("'english'"), bindparam("words", type_=Text))
    matches = literal_column("listed_search.search_vector").op("@@", return_type=Boolean)(tsquery)
    # The vectors are out of line: the title tier is the title index's matches (a hashed set,
    # with the filters too, so a common word's title matches in other categories are not read),
    # not a detoast of each match's title vector.
    titled = _LISTED.alias("ts")
    in_title = c.pk.in_(select(titled.c.pk).where(
        literal_column("ts.title_vector").op("@@", return_type=Boolean)(tsquery),
        *(_filter(titled, name) for name in filters)))
    window, offset, want = (bindparam(name, type_=Integer) for name in ("window", "offset", "want"))
    m = select(
        c.pk, c.listed_at, c.category, c.grade, *(c[f"has_{k}"] for k in KINDS), in_title.label("t1"),
    ).where(*where, matches).cte("m")
    n = func.row_number().over(partition_by=m.c.t1, order_by=(m.c.listed_at.desc(), m.c.pk.desc()))
    o = select(m.c.pk, m.c.t1, n.label("n")).subquery("o")
    first_tier = select(func.count()).select_from(m).where(m.c.t1).scalar_subquery()
    # Only a window the page reaches is ranked: the other tier's rows sort wholly before or
    # after the page, so their order inside it does not change the page.
    reached = or_(and_(o.c.t1, first_tier > offset), and_(not_(o.c.t1), first_tier < offset + want))
    ranked = _products.alias("r")
    rank = select(func.ts_rank_cd(literal_column("r.search_vector"), tsquery)).select_from(ranked).where(
        ranked.c.pk == o.c.pk).scalar_subquery()
    r = case((and_(o.c.n <= window, reached), rank)).label("r")
    keys = select(o.c.pk, o.c.t1, o.c.n, r)
    keys = keys.order_by(*_order(o.c.t1, o.c.n, keys.selected_columns.r, o.c.pk, window))
    k = keys.offset(offset).limit(want).subquery("k")
    one: ColumnElement[Any] = literal_column("1")
    groups = select(m.c.category, m.c.grade, func.count().label("n"), *(
        func.count(one).filter(m.c[f"has_{kind}"].is_(True)).label(kind) for kind in KINDS
    )).group_by(m.c.category, m.c.grade).subquery("g")
    # As text: the driver would decode the JSON again on every row of the page (~0.4 ms a search).
    facet_groups = select(cast(func.json_agg(func.json_build_array(*groups.c)), Text)).scalar_subquery()
    return (select(*HIT_COLUMNS, facet_groups.label("facet_groups"))
            .select_from(k.join(_products, _products.c.pk == k.c.pk))
            .order_by(*_order(k.c.t1, k.c.n, k.c.r, k.c.pk, window)))


def _filter(table: Any, name: str) -> ColumnElement[bool]:
    """``category`` or ``grade``: equal to the parameter of that name; ``has_<kind>``: true."""
    column = table.c[name]
    return column.is_(True) if name.startswith("has_") else column == bindparam(name, type_=Text)  # type: ignore[no-any-return]


def _order(t1: Any, n: Any, r: Any, pk: Any, window: Any) -> list[Any]:
    """Tier 1 first; in each tier its window by rank (then pk, newest pk first), then the
    rest newest first (``n``: the position in the tier, newest first)."""
    return [t1.desc(), (n > window).asc(), r.desc().nulls_last(), case((n <= window, pk)).desc(), n.asc()]
