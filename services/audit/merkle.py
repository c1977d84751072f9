"""Merkle tree layout of the audit log (pure: no database, no web framework).

Tree shape and hashes are RFC 9162 §2.1. What is stored:

* level 0: every leaf hash (kept beside its event, ``events.leaf_hash``);
* levels 4, 8, 12, ...: every *full* subtree hash at that level
  (``tree_nodes``), appended when the subtree completes.

Any full subtree hash at an unstored level ``l`` is folded from at most
``2**(l % 4)`` (≤ 8) stored nodes of the stratum below, so a proof touches
O(log n) rows while the log stores ~1/15 node row per event (appends stay
cheap). Every hash a proof needs is the hash of a range ``[start, end)`` that
decomposes into full subtrees; :func:`plan` turns ranges into the stored nodes
to read, :func:`range_hashes` folds them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from services.audit.verifylib import EMPTY_ROOT, node_hash

STRATUM = 4  # store every 4th level

Node = tuple[int, int]  # (level, index): the full subtree over leaves [index << level, (index + 1) << level)
Range = tuple[int, int]  # leaves [start, end)


def is_stored_level(level: int) -> bool:
    return level % STRATUM == 0


def _largest_pow2_below(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 PATH(index, D[0:size]) as leaf ranges, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    stack: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_pow2_below(end - start)
        if index < start + k:
            stack.append((start + k, end))
            end = start + k
        else:
            stack.append((start, start + k))
            start += k
    return stack[::-1]


def consistency_ranges(first: int, second: int) -> list[Range]:
    """RFC 9162 PROOF(first, D[0:second]) as leaf ranges, in proof order."""
    if not 0 < first <= second:
        raise ValueError(f"sizes must satisfy 0 < first <= second (got {first}, {second})")
    out: list[Range] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                out.append((start, end))
            return
        k = _largest_pow2_below(n)
        if m <= k:
            subproof(m, start, start + k, whole)
            out.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            out.append((start, start + k))

    subproof(first, 0, second, True)
    return out


def full_nodes(start: int, end: int) -> list[Node]:
    """Decompose ``[start, end)`` into full subtrees, left to right, the way
    RFC 9162's MTH splits it (valid for every range a proof asks for)."""
    nodes: list[Node] = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        while pos & ((1 << level) - 1):
            level -= 1
        nodes.append((level, pos >> level))
        pos += 1 << level
    return nodes


def stored_nodes_for(node: Node) -> list[Node]:
    """The stored nodes ``node`` is folded from (itself when stored)."""
    level, index = node
    base = level - level % STRATUM
    width = 1 << (level - base)
    return [(base, j) for j in range(index * width, (index + 1) * width)]


def plan(ranges: Iterable[Range]) -> set[Node]:
    """Every stored node needed to compute the hashes of ``ranges``."""
    needed: set[Node] = set()
    for start, end in ranges:
        for node in full_nodes(start, end):
            needed.update(stored_nodes_for(node))
    return needed


def _fold_level(hashes: list[bytes]) -> list[bytes]:
    return [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]


def node_from_stored(node: Node, stored: Mapping[Node, bytes]) -> bytes:
    layer = [stored[n] for n in stored_nodes_for(node)]
    while len(layer) > 1:
        layer = _fold_level(layer)
    return layer[0]


def range_hash(start: int, end: int, stored: Mapping[Node, bytes]) -> bytes:
    """MTH(D[start:end]) from stored nodes (see :func:`plan`)."""
    if start == end:
        return EMPTY_ROOT
    hashes = [node_from_stored(n, stored) for n in full_nodes(start, end)]
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def range_hashes(ranges: Sequence[Range], stored: Mapping[Node, bytes]) -> list[bytes]:
    return [range_hash(s, e, stored) for s, e in ranges]


# --- appending --------------------------------------------------------------------


def frontier_nodes(size: int) -> list[Node]:
    """The right edge of a tree of ``size``: one full subtree per set bit."""
    return [(k, (size >> k) - 1) for k in range(size.bit_length()) if (size >> k) & 1]


def append_leaves(
    size: int, frontier: dict[int, bytes], leaf_hashes: Sequence[bytes]
) -> tuple[list[tuple[int, int, bytes]], dict[int, bytes]]:
    """Add leaves to a tree of ``size`` whose right edge is ``frontier``
    (level → hash of :func:`frontier_nodes`). Return the new full subtrees at
    stored levels above 0 as ``(level, index, hash)`` and the new frontier."""
    edge = dict(frontier)
    new_nodes: list[tuple[int, int, bytes]] = []
    for h in leaf_hashes:
        level, index = 0, size
        while index & 1:  # a completed left sibling waits at this level
            h = node_hash(edge.pop(level), h)
            index >>= 1
            level += 1
            if is_stored_level(level):
                new_nodes.append((level, index, h))
        edge[level] = h
        size += 1
    return new_nodes, edge


def root_of_frontier(frontier: Mapping[int, bytes]) -> bytes:
    """MTH of the whole tree from its right edge."""
    if not frontier:
        return EMPTY_ROOT
    levels = sorted(frontier)
    h = frontier[levels[0]]
    for level in levels[1:]:
        h = node_hash(frontier[level], h)
    return h
