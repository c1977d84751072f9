"""Catalog search: filters, full-text relevance, facets and cursors.

One interface, two engines: PostgreSQL matches ``plainto_tsquery`` against
the generated ``search_vector`` (GIN index; ``title_vector`` for the first
relevance tier) and ranks with ``ts_rank_cd``; SQLite matches the FTS5 table
``products_fts`` (column filters for the first tier) and ranks with ``bm25``.
Both stem English (Porter), drop the same stop words and put title and tag
matches first, so the same query ranks the same products first on both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    Integer,
    Select,
    Text,
    and_,
    column,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from services.catalog import search_pg, search_tags
from services.catalog.cache import TtlCache
from services.catalog.lifecycle import is_regulator
from services.catalog.models import ListedFacetCount, Product, ProductTag, WordFacetCount
from services.catalog.statuses import ProductStatus
from shared.auth import Principal
from shared.errors import BadRequest, Forbidden
from shared.pagination import encode_cursor, invalid_cursor

SortKey = Literal["relevance", "newest", "price"]
PLAN_KINDS = ("free", "one_time", "subscription", "metered")
MAX_FACET_VALUES = 50

_products = Product.__table__
_COUNTS = ListedFacetCount.__table__
_WORDS = WordFacetCount.__table__
_fts = table("products_fts", column("rowid", Integer))
_KIND_COLUMN = {
    "free": _products.c.has_free,
    "one_time": _products.c.has_one_time,
    "subscription": _products.c.has_subscription,
    "metered": _products.c.has_metered,
}
_HIT_COLUMNS = search_pg.HIT_COLUMNS


@dataclass(frozen=True)
class SearchQuery:
    q: str | None = None
    category: str | None = None
    tag: str | None = None
    grade: str | None = None
    provider: str | None = None
    plan_kind: str | None = None
    max_price: int | None = None
    currency: str | None = None
    status: str = ProductStatus.LISTED
    sort: SortKey = "relevance"
    limit: int = 20
    cursor: dict[str, Any] | None = None
    facets: bool = True


@dataclass
class SearchResult:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int
    facets: dict[str, dict[str, int]]


# PostgreSQL's `english` text-search stop words (Snowball); dropped from queries on both
# engines so the same words match the same products.
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that
    these those am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own
    same so than too very s t can will just don should now
    """.split()
)


def query_words(q: str) -> list[str]:
    """The searchable words of ``q``: no operators, no stop words, at most 32."""
    return [w for w in re.findall(r"\w+", q.lower()) if w not in STOP_WORDS][:32]


class _Plan:
    """The FROM, WHERE and rank of one search, per dialect."""

    def __init__(self, dialect: str, principal: Principal, query: SearchQuery) -> None:
        self.from_: FromClause = _products
        self.where: list[ColumnElement[bool] | TextClause] = []
        self.rank: ColumnElement[Any] | None = None
        self.rank_desc = True
        self.tsquery: ColumnElement[Any] | None = None  # PostgreSQL
        # PostgreSQL, a listed-product search for one word and nothing else: its tier-1 window
        # can come from listed_title_words.
        self.title_word: str | None = None
        # PostgreSQL, a listed search by tag without words: listed_product_tags has its matches
        # (search_tags); the names of its other filters.
        self.tags = search_tags.filters(query) if dialect == "postgresql" else None
        self._tiers: dict[int, list[ColumnElement[bool] | TextClause]] = {}
        self._nothing = False
        self._visibility(principal, query)
        self._filters(query)
        if query.q and query.q.strip():
            self._text(dialect, query)

    def _visibility(self, principal: Principal, query: SearchQuery) -> None:
        self.where.append(_products.c.status == query.status)
        if query.status == ProductStatus.LISTED or is_regulator(principal):
            return
        if "provider" in principal.roles and principal.org_id:
            # Providers may list their own unlisted products, never anybody else's.
            self.where.append(_products.c.provider_org == principal.org_id)
            return
        raise Forbidden(
            f"Only regulators, and providers for their own products, can search {query.status} "
            "products; everybody can search listed ones (status=listed, the default).",
        )

    def _filters(self, query: SearchQuery) -> None:
        c = _products.c
        if query.category:
            self.where.append(c.category == query.category)
        if query.grade:
            self.where.append(c.grade == query.grade)
        if query.provider:
            self.where.append(c.provider_org == query.provider)
        if query.plan_kind:
            self.where.append(_KIND_COLUMN[query.plan_kind].is_(True))
        if query.tag:
            tagged = select(ProductTag.product_pk).where(ProductTag.tag == query.tag.strip().lower())
            self.where.append(c.pk.in_(tagged))
        if query.max_price is not None and not query.currency:
            raise BadRequest(
                "max_price needs a currency: prices are compared in one currency's minor units "
                "(e.g. max_price=5000&currency=EUR).",
                problem="max-price-needs-currency",
                title="Currency missing",
            )
        if query.currency:
            self.where.append(c.currency == query.currency)
        if query.max_price is not None:
            self.where.append(c.min_price <= query.max_price)

    def _text(self, dialect: str, query: SearchQuery) -> None:
        words = query_words(query.q or "")
        if not words:
            self._nothing = True
            return
        if dialect == "postgresql":
            vector: ColumnElement[Any] = literal_column("products.search_vector")
            title_vector: ColumnElement[Any] = literal_column("products.title_vector")
            # The words are already operator-free: websearch_to_tsquery ANDs them as
            # plainto_tsquery would, and never raises on odd input.
            self.tsquery = func.websearch_to_tsquery(literal_column("'english'"), " ".join(words))
            matches = vector.op("@@", return_type=Boolean)(self.tsquery)
            in_title = title_vector.op("@@", return_type=Boolean)(self.tsquery)
            # Every title/tag lexeme is also in search_vector, so a title match is a match: tier 1
            # needs only the (small) title index, not the posting list of every mention.
            self._tiers = {0: [matches], 1: [in_title], 2: [matches, not_(in_title)]}
            self.rank = func.ts_rank_cd(vector, self.tsquery)
            if _one_word_search(query):
                self.title_word = words[0]
            return
        match = " ".join(f'"{w}"' for w in words)
        title_match = f"{{title tags_text}} : ({match})"
        self.from_ = _products.join(_fts, _fts.c.rowid == _products.c.pk)
        self._tiers = {
            tier: [text("products_fts MATCH :fts_query").bindparams(fts_query=expr)]
            for tier, expr in ((0, match), (1, title_match), (2, f"({match}) NOT ({title_match})"))
        }
        # bm25 column weights follow the FTS5 column order: title, tags, summary, description
        self.rank = literal_column("bm25(products_fts, 10.0, 6.0, 4.0, 1.0)")
        self.rank_desc = False

    def select(self, *cols: Any, tier: int = 0) -> Select[Any]:
        """Tier 0: every match; 1: all words in title or tags; 2: the other matches."""
        where = [*self.where, *self._tiers.get(tier, [])]
        if self._nothing:
            where.append(literal_column("1 = 0", Boolean))
        return select(*cols).select_from(self.from_).where(and_(*where))


def _hit(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "provider_org": row.provider_org,
        "slug": row.slug,
        "title": row.title,
        "summary": row.summary,
        "category": row.category,
        "tags": row.tags_text.split(),
        "grade": row.grade,
        "status": row.status,
        "latest_version": row.latest_version,
        "currency": row.currency,
        "min_price": row.min_price,
        "plan_kinds": [k for k in PLAN_KINDS if getattr(row, f"has_{k}")],
        "listed_at": row.listed_at,
    }


def _bad_cursor() -> BadRequest:
    return invalid_cursor(
        "The cursor does not belong to this search; pass back `next_cursor` with the same "
        "parameters, or start again without a cursor."
    )


#: Per tier, the newest this many matches are ranked; the rest of the tier follows newest first.
RANK_WINDOW = 200


async def _relevance_page(
    session: AsyncSession, plan: _Plan, query: SearchQuery, offset: int
) -> tuple[list[Any], str | None]:
    """Relevance order in two tiers: products with every word in the title or tags first,
    then the other matches. Within a tier the newest :data:`RANK_WINDOW` matches come first,
    by rank, then the tier's older matches, newest first: ranking (ts_rank_cd reads every
    position of every matched word) costs a bounded window however common the words are,
    and the order stays one fixed sequence, so offset cursors page through it consistently.
    Only the first tier is read unless the page reaches past it."""
    want = query.limit + 1
    rows = await _tier_rows(session, plan, 1, offset, want)
    if len(rows) < want:
        if rows or offset == 0:  # (an empty first page of the tier: the tier is empty)
            first_tier = offset + len(rows)
        else:
            first_tier = (await session.execute(plan.select(func.count(), tier=1))).scalar_one()
        rows += await _tier_rows(session, plan, 2, max(0, offset - first_tier), want - len(rows))
    more = len(rows) > query.limit
    nxt = encode_cursor({"s": "relevance", "o": offset + query.limit}) if more else None
    return rows[: query.limit], nxt


async def _tier_rows(session: AsyncSession, plan: _Plan, tier: int, offset: int, want: int) -> list[Any]:
    """Rows ``offset .. offset + want`` of one tier in relevance order (see above)."""
    c = _products.c
    newest = (c.listed_at.desc(), c.pk.desc())
    rows: list[Any] = []
    if offset < RANK_WINDOW:
        assert plan.rank is not None
        if tier == 1 and plan.title_word is not None:  # PostgreSQL: from listed_title_words
            params = {"word": plan.title_word, "window": RANK_WINDOW, "offset": offset, "want": want}
            rows = list((await session.execute(search_pg.title_word_page(), params)).all())
        if not rows:  # (above: the word is not one lexeme, or in no listed title; the index decides)
            # The window is chosen by keys only (a narrow sort), then its rows are read and ranked.
            window = plan.select(c.pk, tier=tier).order_by(*newest).limit(RANK_WINDOW)
            if plan.tsquery is not None:  # PostgreSQL: rank from the stored vector, no new match
                stmt = select(*_HIT_COLUMNS).where(c.pk.in_(window)).order_by(plan.rank.desc(), c.pk.desc())
            else:  # SQLite: bm25 exists only inside the FTS5 match
                stmt = plan.select(*_HIT_COLUMNS, tier=tier).where(c.pk.in_(window)).order_by(
                    plan.rank.asc(), c.pk.desc())
            rows = list((await session.execute(stmt.offset(offset).limit(want))).all())
    if len(rows) < want and offset + len(rows) >= RANK_WINDOW:
        rest = (plan.select(*_HIT_COLUMNS, tier=tier).order_by(*newest)
                .offset(max(offset, RANK_WINDOW)).limit(want - len(rows)))
        rows += list((await session.execute(rest)).all())
    return rows


async def _one_pass_page(
    session: AsyncSession, query: SearchQuery, filters: tuple[str, ...]
) -> tuple[list[Any], str | None, list[Any] | None]:
    """A listed search of the shape :func:`_one_pass_filters` accepts, on PostgreSQL: its relevance
    page and facet groups (None when the page is empty) from one statement (search_pg.one_pass)."""
    try:
        offset = max(0, int((query.cursor or {}).get("o", 0)))
    except (TypeError, ValueError) as exc:
        raise _bad_cursor() from exc
    params = {"words": " ".join(query_words(query.q or "")), "window": RANK_WINDOW, "offset": offset,
              "want": query.limit + 1, "category": query.category, "grade": query.grade}
    rows = list((await session.execute(search_pg.one_pass(filters), params)).all())
    groups = orjson.loads(rows[0].facet_groups) if rows and rows[0].facet_groups else None
    more = len(rows) > query.limit
    nxt = encode_cursor({"s": "relevance", "o": offset + query.limit}) if more else None
    return rows[: query.limit], nxt, groups


async def _page(session: AsyncSession, plan: _Plan, query: SearchQuery) -> tuple[list[Any], str | None]:
    c = _products.c
    sort = query.sort
    if sort == "relevance" and plan.rank is None:
        sort = "newest"
    cur = query.cursor or {}
    if cur and cur.get("s") != sort:
        raise _bad_cursor()
    stmt = plan.select(*_HIT_COLUMNS)
    params: dict[str, Any] = {}
    try:
        if sort == "relevance":
            return await _relevance_page(session, plan, query, max(0, int(cur.get("o", 0))))
        if sort == "price" and plan.tags is not None and query.max_price is not None:
            # (a price cap needs a currency: the tag's index range is in price order)
            params = {**search_tags.params(query), "want": query.limit + 1}
            if cur:
                params.update(p=int(cur["p"]), k=int(cur["k"]))
            stmt = search_tags.price_page(plan.tags, bool(cur))
        elif sort == "price":
            price = c.min_price if query.status == ProductStatus.LISTED else func.coalesce(c.min_price, 0)
            if cur:
                p, pk = int(cur["p"]), int(cur["k"])
                stmt = stmt.where(or_(price > p, and_(price == p, c.pk > pk)))
            stmt = stmt.order_by(price.asc(), c.pk.asc())
        elif query.status == ProductStatus.LISTED:
            if cur:
                ts, pk = datetime.fromisoformat(cur["t"]), int(cur["k"])
                stmt = stmt.where(or_(c.listed_at < ts, and_(c.listed_at == ts, c.pk < pk)))
            stmt = stmt.order_by(c.listed_at.desc(), c.pk.desc())
        else:
            if cur:
                stmt = stmt.where(c.pk < int(cur["k"]))
            stmt = stmt.order_by(c.pk.desc())
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad_cursor() from exc
    rows = list((await session.execute(stmt.limit(query.limit + 1), params)).all())
    if len(rows) <= query.limit:
        return rows, None
    rows = rows[: query.limit]
    last = rows[-1]
    position: dict[str, Any] = {"s": sort, "k": last.pk}
    if sort == "price":
        position["p"] = last.min_price or 0
    elif query.status == ProductStatus.LISTED:
        position["t"] = last.listed_at.isoformat()
    return rows, encode_cursor(position)


async def _facets(session: AsyncSession, plan: _Plan) -> tuple[int, dict[str, dict[str, int]]]:
    """Total and facet counts in one scan: group by category and grade (a few dozen groups;
    the columns are covered by ``ix_products_facets``), counting each plan kind in the group
    with a FILTER, and fold the groups into the three facets here."""
    c = _products.c
    one: ColumnElement[Any] = literal_column("1")
    stmt = plan.select(c.category, c.grade, func.count(),
                       *(func.count(one).filter(_KIND_COLUMN[k].is_(True)) for k in PLAN_KINDS)
                       ).group_by(c.category, c.grade)
    return _fold((await session.execute(stmt)).all())


def _counted_facets(query: SearchQuery) -> bool:
    """Can ``listed_facet_counts`` answer this search's total and facets? Yes when every
    filter is one of its columns (no words, tag, provider or price cap)."""
    return (query.status == ProductStatus.LISTED and not (query.q and query.q.strip()) and not query.tag
            and not query.provider and query.max_price is None)


async def _facets_from_counts(
    session: AsyncSession, query: SearchQuery
) -> tuple[int, dict[str, dict[str, int]]]:
    """Total and facets summed from the maintained counts (a few hundred rows at most)."""
    c = _COUNTS.c
    stmt = select(c.category, c.grade, func.sum(c.n),
                  *(func.sum(c.n).filter(c[f"has_{k}"].is_(True)) for k in PLAN_KINDS)
                  ).where(c.n > 0).group_by(c.category, c.grade)
    if query.category:
        stmt = stmt.where(c.category == query.category)
    if query.grade:
        stmt = stmt.where(c.grade == query.grade)
    if query.plan_kind:
        stmt = stmt.where(c[f"has_{query.plan_kind}"].is_(True))
    if query.currency:
        stmt = stmt.where(c.currency == query.currency)
    return _fold((await session.execute(stmt)).all())


def _one_pass_filters(query: SearchQuery) -> tuple[str, ...] | None:
    """The filters of a listed relevance search that search_pg.one_pass answers in one
    statement: several words, or words with category, grade or plan kind filters, and no other
    filter (None otherwise; a bare word goes to listed_title_words and word_facet_counts)."""
    filters = tuple(name for name, value in (("category", query.category), ("grade", query.grade),
                                             (f"has_{query.plan_kind}", query.plan_kind)) if value)
    words = len(query_words(query.q or ""))
    if (query.sort != "relevance" or words == 0 or (words == 1 and not filters)
            or query.status != ProductStatus.LISTED or query.tag or query.provider
            or query.max_price is not None or query.currency):
        return None
    return filters


def _one_word_search(query: SearchQuery) -> bool:
    """A listed-product search for one word and nothing else: ``word_facet_counts`` may know it."""
    return (query.status == ProductStatus.LISTED and len(query_words(query.q or "")) == 1
            and not query.category and not query.tag and not query.grade and not query.provider
            and not query.plan_kind and query.max_price is None and not query.currency)


async def _facets_of_one_word(
    session: AsyncSession, query: SearchQuery
) -> tuple[int, dict[str, dict[str, int]]] | None:
    """Total and facets of a one-word search from ``word_facet_counts`` (PostgreSQL), or None
    when the word is not exactly one lexeme there (then the caller counts the matches)."""
    vector = func.to_tsvector(literal_column("'english'"), query_words(query.q or "")[0])
    lexemes = func.tsvector_to_array(vector, type_=ARRAY(Text))
    c = _WORDS.c
    stmt = select(c.facet, c.value, c.n).where(
        func.array_length(lexemes, 1) == 1, c.lexeme == lexemes[1], c.n > 0)
    rows = (await session.execute(stmt)).all()
    if not rows:
        return None  # several lexemes, or none listed: counting directly is exact and cheap
    total = 0
    facets: dict[str, dict[str, int]] = {
        "category": {}, "grade": {}, "plan_kind": dict.fromkeys(PLAN_KINDS, 0)}
    for facet, value, n in rows:
        if facet == "total":
            total = int(n)
        else:
            facets[facet][value] = int(n)
    top = sorted(facets["category"].items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FACET_VALUES]
    facets["category"] = dict(top)
    facets["grade"] = dict(sorted(facets["grade"].items()))
    return total, facets


def _fold(groups: Sequence[Any]) -> tuple[int, dict[str, dict[str, int]]]:
    """(category, grade, count, count per plan kind...) groups folded into the total and
    the three facets."""
    categories: dict[str, int] = {}
    grades: dict[str, int] = {}
    kinds: dict[str, int] = dict.fromkeys(PLAN_KINDS, 0)
    total = 0
    for category, grade, n, *per_kind in groups:
        n = int(n)
        total += n
        categories[category] = categories.get(category, 0) + n
        grades[grade] = grades.get(grade, 0) + n
        for kind, k in zip(PLAN_KINDS, per_kind, strict=True):
            kinds[kind] += int(k or 0)
    top = dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FACET_VALUES])
    return total, {"category": top, "grade": dict(sorted(grades.items())), "plan_kind": kinds}


def _facet_key(query: SearchQuery) -> tuple[Any, ...] | None:
    """Listed products look the same to everybody, so their counts can be shared."""
    if query.status != ProductStatus.LISTED:
        return None
    words = tuple(query_words(query.q)) if query.q else ()
    return (words, query.category, query.tag and query.tag.strip().lower(), query.grade, query.provider,
            query.plan_kind, query.max_price, query.currency)


async def search(
    session: AsyncSession,
    principal: Principal,
    query: SearchQuery,
    facet_cache: TtlCache | None = None,
) -> SearchResult:
    """One page of hits, plus total and facets (from ``facet_cache`` when it has them:
    counts may lag by its TTL, pages never do)."""
    dialect = session.get_bind().dialect.name
    # A listed search with several words, or words and facet-column filters, on PostgreSQL: one
    # statement has its page and facet groups (search_pg.one_pass); nothing in it needs the plan's checks.
    one_pass = _one_pass_filters(query) if dialect == "postgresql" else None
    plan = None if one_pass is not None else _Plan(dialect, principal, query)
    relevance = plan is None or plan.rank is not None  # (no words: relevance means newest)
    if query.cursor and query.cursor.get("s") != (
        query.sort if query.sort != "relevance" or relevance else "newest"
    ):
        raise _bad_cursor()
    total = -1
    facets: dict[str, dict[str, int]] = {"category": {}, "grade": {}, "plan_kind": {}}
    key = _facet_key(query) if facet_cache is not None and query.facets else None
    cached = facet_cache.get(key) if facet_cache is not None and key is not None else None
    groups = None
    if plan is None:
        rows, nxt, groups = await _one_pass_page(session, query, one_pass or ())
    else:
        rows, nxt = await _page(session, plan, query)
    if cached is not None:
        total, facets = cached  # type: ignore[misc]
    elif groups is not None and query.facets:
        total, facets = _fold(groups)
        if facet_cache is not None and key is not None:
            facet_cache.put(key, (total, facets))
    elif query.facets:
        counted = None
        if _counted_facets(query):
            counted = await _facets_from_counts(session, query)
        elif dialect == "postgresql" and _one_word_search(query):
            counted = await _facets_of_one_word(session, query)
        elif plan is not None and plan.tags is not None:
            groups_stmt = search_tags.facet_groups(plan.tags)
            counted = _fold((await session.execute(groups_stmt, search_tags.params(query))).all())
        total, facets = counted or await _facets(session, plan or _Plan(dialect, principal, query))
        if facet_cache is not None and key is not None:
            facet_cache.put(key, (total, facets))
    return SearchResult([_hit(r) for r in rows], nxt, total, facets)
