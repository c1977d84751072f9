"""Merkle tree hashes and proofs: known answers, a naive reference, corruptions."""

from __future__ import annotations

import hashlib
import random

import pytest

from services.audit import merkle
from services.audit.verifylib import (
    EMPTY_ROOT,
    RootBuilder,
    VerificationError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 test leaves used by transparency-dev/merkle (testonly.LeafInputs).
LEAVES = [bytes.fromhex(h) for h in [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]]
ROOTS = [bytes.fromhex(h) for h in [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]]
H = bytes.fromhex
INCLUSION_VECTORS = [  # (index, size, path) from the RFC 6962 reference tree
    (0, 8, [H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]
CONSISTENCY_VECTORS = [  # (first, second, proof)
    (1, 1, []),
    (1, 8, [H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]


# --- naive reference: RFC 9162 §2.1 written out literally -------------------------

def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = k_of(len(hashes))
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def naive_path(m: int, hashes: list[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return [*naive_path(m, hashes[:k]), mth(hashes[k:])]
    return [*naive_path(m - k, hashes[k:]), mth(hashes[:k])]


def naive_subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [mth(hashes)]
    k = k_of(n)
    if m <= k:
        return [*naive_subproof(m, hashes[:k], b), mth(hashes[k:])]
    return [*naive_subproof(m - k, hashes[k:], False), mth(hashes[:k])]


def leaf_hashes(n: int) -> list[bytes]:
    return [leaf_hash(f"leaf {i}".encode()) for i in range(n)]


class MemoryTree:
    """The service's storage layout kept in a dict: stored leaves and strata nodes."""

    def __init__(self) -> None:
        self.size = 0
        self.frontier: dict[int, bytes] = {}
        self.stored: dict[merkle.Node, bytes] = {}

    def append(self, hashes: list[bytes]) -> None:
        for i, h in enumerate(hashes):
            self.stored[(0, self.size + i)] = h
        nodes, self.frontier = merkle.append_leaves(self.size, self.frontier, hashes)
        for level, idx, h in nodes:
            assert merkle.is_stored_level(level) and (level, idx) not in self.stored
            self.stored[(level, idx)] = h
        self.size += len(hashes)

    def hashes(self, ranges: list[merkle.Range]) -> list[bytes]:
        needed = merkle.plan(ranges)
        assert needed <= self.stored.keys(), "a proof needs a node that is not stored yet"
        return merkle.range_hashes(ranges, {n: self.stored[n] for n in needed})


# --- known answers ------------------------------------------------------------------

def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert RootBuilder().root() == EMPTY_ROOT
    assert merkle.root_of_frontier({}) == EMPTY_ROOT


def test_leaf_hash_of_empty_string() -> None:
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_tree_roots(size: int) -> None:
    hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert mth(hashes) == ROOTS[size - 1]
    tree = MemoryTree()
    tree.append(hashes)
    assert merkle.root_of_frontier(tree.frontier) == ROOTS[size - 1]
    assert tree.hashes([(0, size)]) == [ROOTS[size - 1]]
    builder = RootBuilder()
    for h in hashes:
        builder.add(h)
    assert builder.root() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_reference_inclusion_proofs(index: int, size: int, path: list[bytes]) -> None:
    tree = MemoryTree()
    tree.append([leaf_hash(x) for x in LEAVES])
    assert tree.hashes(merkle.inclusion_ranges(index, size)) == path
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), path, ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_reference_consistency_proofs(first: int, second: int, proof: list[bytes]) -> None:
    tree = MemoryTree()
    tree.append([leaf_hash(x) for x in LEAVES])
    assert tree.hashes(merkle.consistency_ranges(first, second)) == proof
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], proof)


# --- every (index, size) pair up to 64 leaves against the naive reference ---------------

MAX = 64


@pytest.fixture(scope="module")
def grown() -> tuple[list[bytes], dict[int, MemoryTree]]:
    """Snapshots of a tree grown one leaf at a time, so each size sees only the
    nodes stored by then."""
    hashes = leaf_hashes(MAX)
    snapshots: dict[int, MemoryTree] = {}
    tree = MemoryTree()
    for n in range(1, MAX + 1):
        tree.append([hashes[n - 1]])
        snap = MemoryTree()
        snap.size, snap.frontier, snap.stored = tree.size, dict(tree.frontier), dict(tree.stored)
        snapshots[n] = snap
    return hashes, snapshots


def test_every_inclusion_proof_up_to_64_matches_the_reference(grown) -> None:
    hashes, snaps = grown
    for n in range(1, MAX + 1):
        root = mth(hashes[:n])
        assert merkle.root_of_frontier(snaps[n].frontier) == root
        for m in range(n):
            proof = snaps[n].hashes(merkle.inclusion_ranges(m, n))
            assert proof == naive_path(m, hashes[:n]), (m, n)
            verify_inclusion(m, n, hashes[m], proof, root)


def test_every_consistency_proof_up_to_64_matches_the_reference(grown) -> None:
    hashes, snaps = grown
    for n in range(1, MAX + 1):
        for m in range(1, n + 1):
            proof = snaps[n].hashes(merkle.consistency_ranges(m, n))
            assert proof == naive_subproof(m, hashes[:n], True), (m, n)
            verify_consistency(m, n, mth(hashes[:m]), mth(hashes[:n]), proof)


def test_proofs_in_a_larger_tree_use_higher_strata() -> None:
    """Sizes past 256 leaves exercise stored levels 4 and 8 and batch appends."""
    rng = random.Random(7)
    hashes = leaf_hashes(1100)
    tree = MemoryTree()
    pos = 0
    while pos < len(hashes):
        step = rng.randint(1, 150)
        tree.append(hashes[pos : pos + step])
        pos += step
    assert any(level == 8 for level, _ in tree.stored)
    for _ in range(40):
        n = rng.randint(257, 1100)
        m = rng.randrange(n)
        assert tree.hashes(merkle.inclusion_ranges(m, n)) == naive_path(m, hashes[:n])
        first = rng.randint(1, n)
        assert tree.hashes(merkle.consistency_ranges(first, n)) == naive_subproof(first, hashes[:n], True)


# --- corrupted proofs are rejected ------------------------------------------------------

def flipped(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % 32] ^= 1 << (bit % 8)
    return bytes(b)


def proof_variants(proof: list[bytes]) -> list[tuple[str, list[bytes]]]:
    out = []
    for i in range(len(proof)):
        out.append((f"bit flipped in hash {i}", [*proof[:i], flipped(proof[i], 8 * i + 3), *proof[i + 1:]]))
        out.append((f"hash {i} dropped", proof[:i] + proof[i + 1:]))
    extra = hashlib.sha256(b"extra").digest()
    out.append(("hash appended", [*proof, extra]))
    out.append(("hash prepended", [extra, *proof]))
    return out


def test_every_corrupted_inclusion_proof_is_rejected(grown) -> None:
    hashes, snaps = grown
    roots = {n: mth(hashes[:n]) for n in range(1, MAX + 2)}
    for n in range(1, MAX + 1):
        for m in range(n):
            proof = snaps[n].hashes(merkle.inclusion_ranges(m, n))
            bad: list[tuple[str, int, int, bytes, list[bytes], bytes]] = []
            for name, p in proof_variants(proof):
                bad.append((name, m, n, hashes[m], p, roots[n]))
            for d in (-1, 1):
                bad.append((f"index {d:+}", m + d, n, hashes[m], proof, roots[n]))
                if 0 < n + d <= MAX + 1 and m < n + d:
                    bad.append((f"size {d:+}", m, n + d, hashes[m], proof, roots[n + d]))
            bad.append(("other leaf", m, n, leaf_hash(b"forged"), proof, roots[n]))
            if n > 1:
                bad.append(("root of another size", m, n, hashes[m], proof, roots[n - 1]))
            for name, mm, nn, leaf, p, root in bad:
                with pytest.raises(VerificationError):
                    verify_inclusion(mm, nn, leaf, p, root)
                    pytest.fail(f"inclusion ({m}, {n}) accepted with {name}")


def test_every_corrupted_consistency_proof_is_rejected(grown) -> None:
    hashes, snaps = grown
    roots = {n: mth(hashes[:n]) for n in range(1, MAX + 2)}
    for n in range(1, MAX + 1):
        for m in range(1, n + 1):
            proof = snaps[n].hashes(merkle.consistency_ranges(m, n))
            bad: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = []
            for name, p in proof_variants(proof):
                bad.append((name, m, n, roots[m], roots[n], p))
            if m != n:
                bad.append(("roots swapped", m, n, roots[n], roots[m], proof))
            for d in (-1, 1):
                if 0 < m + d <= n and m + d != m:
                    bad.append((f"first {d:+}", m + d, n, roots[m + d], roots[n], proof))
                if m <= n + d <= MAX + 1 and n + d != n:
                    bad.append((f"second {d:+}", m, n + d, roots[m], roots[n + d], proof))
            for name, mm, nn, r1, r2, p in bad:
                with pytest.raises(VerificationError):
                    verify_consistency(mm, nn, r1, r2, p)
                    pytest.fail(f"consistency ({m}, {n}) accepted with {name}")
