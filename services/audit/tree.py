"""Reading the stored Merkle tree: sizes, nodes, root hashes and proofs.

Stored nodes are hashes of *full* subtrees, which never change once written (the
log is append-only), so a process may keep them: :class:`TreeCache` remembers the
upper levels (≥ :data:`CACHED_FROM_LEVEL`: a few thousand nodes per 10M events, so
every proof's upper half comes from memory, as Tessera's immutable full tiles are
cached by HTTP caches) and the largest tree size seen (sizes only grow, so a
request for a size at most that needs no ``max(seq)`` query). The lower levels are
too many to keep and are read, one statement per proof.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.audit import merkle
from services.audit.models import events, tree_nodes
from shared.db import Database
from shared.hot_reads import HotQuery

#: Proof reads run in a session (inside a write or a regulator's request) or, for the public
#: proof endpoints, straight on the app's Database as hot reads (shared/hot_reads.py: one
#: prepared statement on asyncpg, autocommit, no BEGIN/COMMIT round trips).
Reader = AsyncSession | AsyncConnection | Database

#: Stored levels from which nodes are kept in memory (level 8 and up: 1/256 of the leaves).
CACHED_FROM_LEVEL = 8


class TreeCorrupted(RuntimeError):
    """A node the tree layout guarantees is missing: storage was tampered with."""


class TreeCache:
    """Per app (per database): immutable upper-level node hashes and the largest size seen."""

    def __init__(self, max_nodes: int = 100_000) -> None:
        self.max_nodes = max_nodes
        self.known_size = 0
        self._nodes: OrderedDict[merkle.Node, bytes] = OrderedDict()

    def saw_size(self, size: int) -> None:
        self.known_size = max(self.known_size, size)

    def get(self, node: merkle.Node) -> bytes | None:
        return self._nodes.get(node)

    def put(self, found: dict[merkle.Node, bytes]) -> None:
        for node, h in found.items():
            if node[0] >= CACHED_FROM_LEVEL:
                self._nodes[node] = h
        while len(self._nodes) > self.max_nodes:
            self._nodes.popitem(last=False)


def dialect_of(reader: AsyncSession | AsyncConnection) -> str:
    if isinstance(reader, AsyncConnection):
        return reader.dialect.name
    return reader.get_bind().dialect.name


_MAX_SEQ = select(func.max(events.c.seq).label("last"))
_HOT_MAX_SEQ = HotQuery(_MAX_SEQ)


async def tree_size(reader: Reader) -> int:
    if isinstance(reader, Database):
        row = await _HOT_MAX_SEQ.one_or_none(reader.hot, reader.engine)
        last = row["last"] if row else None
    else:
        last = await reader.scalar(_MAX_SEQ)
    return 0 if last is None else int(last) + 1


async def size_at_least(session: Reader, size: int, cache: TreeCache | None = None) -> int:
    """``size`` when the log has at least that many events, else the current size
    (read from the database only when the cache has not seen a large enough size)."""
    if cache is not None and size <= cache.known_size:
        return size
    current = await tree_size(session)
    if cache is not None:
        cache.saw_size(current)
    return min(size, current)


# PostgreSQL: one statement of constant text (array parameters), so asyncpg
# reuses its prepared statement whatever the number of nodes.
_PG_FETCH = text(
    "SELECT 0 AS level, seq AS idx, leaf_hash AS hash FROM events WHERE seq = ANY(:seqs) "
    "UNION ALL SELECT t.level, t.idx, t.hash FROM tree_nodes t "
    "JOIN unnest(CAST(:levels AS smallint[]), CAST(:idxs AS bigint[])) AS w(level, idx) "
    "ON t.level = w.level AND t.idx = w.idx"
)
_HOT_PG_FETCH = HotQuery(_PG_FETCH)


async def fetch_nodes(
    session: Reader, nodes: set[merkle.Node], cache: TreeCache | None = None
) -> dict[merkle.Node, bytes]:
    """Read stored nodes (level 0 from ``events``, the rest from ``tree_nodes``),
    the cached ones from ``cache``."""
    found: dict[merkle.Node, bytes] = {}
    if cache is not None:
        for node in nodes:
            h = cache.get(node)
            if h is not None:
                found[node] = h
    wanted = nodes - found.keys() if found else nodes
    read = await _read_nodes(session, wanted) if wanted else {}
    if cache is not None:
        cache.put(read)
    found.update(read)
    missing = nodes - found.keys()
    if missing:
        raise TreeCorrupted(
            f"{len(missing)} stored tree node(s) are missing, e.g. {sorted(missing)[:3]}; "
            "the log storage was changed outside the service"
        )
    return found


async def _read_nodes(reader: Reader, nodes: set[merkle.Node]) -> dict[merkle.Node, bytes]:
    leaves = [idx for level, idx in nodes if level == 0]
    inner = [(level, idx) for level, idx in nodes if level]
    if isinstance(reader, Database):
        if reader.hot.postgres:
            rows = await _HOT_PG_FETCH.all(reader.hot, reader.engine, seqs=leaves,
                                           levels=[lv for lv, _ in inner], idxs=[ix for _, ix in inner])
            return {(int(r["level"]), int(r["idx"])): bytes(r["hash"]) for r in rows}
        async with reader.engine.connect() as conn:
            return await _read_nodes_with(conn, leaves, inner)
    return await _read_nodes_with(reader, leaves, inner)


async def _read_nodes_with(
    session: AsyncSession | AsyncConnection, leaves: list[int], inner: list[merkle.Node]
) -> dict[merkle.Node, bytes]:
    found: dict[merkle.Node, bytes] = {}
    if dialect_of(session) == "postgresql":
        rows = await session.execute(
            _PG_FETCH,
            {"seqs": leaves, "levels": [lv for lv, _ in inner], "idxs": [ix for _, ix in inner]},
        )
        found.update({(int(lv), int(ix)): bytes(h) for lv, ix, h in rows})
        return found
    if leaves:
        leaf_rows = await session.execute(
            select(events.c.seq, events.c.leaf_hash).where(events.c.seq.in_(leaves))
        )
        found.update({(0, int(seq)): bytes(h) for seq, h in leaf_rows})
    by_level: dict[int, list[int]] = {}
    for level, idx in inner:
        by_level.setdefault(level, []).append(idx)
    if by_level:
        cond = or_(*(
            and_(tree_nodes.c.level == lv, tree_nodes.c.idx.in_(ix)) for lv, ix in by_level.items()
        ))
        node_rows = await session.execute(
            select(tree_nodes.c.level, tree_nodes.c.idx, tree_nodes.c.hash).where(cond)
        )
        found.update({(int(lv), int(ix)): bytes(h) for lv, ix, h in node_rows})
    return found


async def range_hashes(
    session: Reader, ranges: Sequence[merkle.Range], cache: TreeCache | None = None
) -> list[bytes]:
    stored = await fetch_nodes(session, merkle.plan(ranges), cache)
    return merkle.range_hashes(ranges, stored)


async def root_hash(session: Reader, size: int, cache: TreeCache | None = None) -> bytes:
    return (await range_hashes(session, [(0, size)], cache))[0]


async def inclusion_proof(
    session: Reader, leaf_index: int, size: int, cache: TreeCache | None = None
) -> list[bytes]:
    return await range_hashes(session, merkle.inclusion_ranges(leaf_index, size), cache)


async def consistency_proof(
    session: Reader, first: int, second: int, cache: TreeCache | None = None
) -> list[bytes]:
    return await range_hashes(session, merkle.consistency_ranges(first, second), cache)
