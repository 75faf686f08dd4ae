"""RFC 9162 §2.1 tree hashing, proofs and verification: published vectors and properties.

Vectors: the RFC 6962 reference tree of 8 leaves, its roots for sizes 1..8 and its inclusion
and consistency proofs, as published in transparency-dev/merkle proof/verify_test.go (the same
values as google/certificate-transparency's merkle_tree_test.cc).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger.tree import (
    EMPTY_ROOT,
    NONE_KEPT,
    Node,
    TreeState,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    range_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# (leaf index, tree size, proof); the Go file numbers leaves from 1.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]
VECTOR_HASHES = [leaf_hash(d) for d in LEAVES]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# -- independent references, written from the RFC's recursive definitions -------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(hashes: list[bytes]) -> bytes:
    """§2.1.1 MTH, recursively, over leaf hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return node_hash(_mth(hashes[:k]), _mth(hashes[k:]))


def _sides(m: int, n: int) -> list[str]:
    """§2.1.3.1 PATH as sibling sides, leaf first: 'R' right of the path, 'L' left."""
    if n <= 1:
        return []
    k = _k(n)
    return [*_sides(m, k), "R"] if m < k else [*_sides(m - k, n - k), "L"]


def _roles(m: int, n: int, whole: bool = True) -> list[str]:
    """§2.1.4.1 SUBPROOF as roles: 'S' MTH(D[m]) sent, 'L' left of both, 'R' right of new."""
    if m == n:
        return [] if whole else ["S"]
    k = _k(n)
    return [*_roles(m, k, whole), "R"] if m <= k else [*_roles(m - k, n - k, False), "L"]


def _hashes(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _from_leaves(hashes: list[bytes]) -> Callable[[int, int], bytes]:
    cache: dict[tuple[int, int], bytes] = {}

    def subtree(start: int, end: int) -> bytes:
        if (start, end) not in cache:
            cache[(start, end)] = _mth(hashes[start:end])
        return cache[(start, end)]

    return subtree


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


# -- published vectors ------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT == TreeState().root()


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_roots(size: int) -> None:
    assert root_from_leaves(VECTOR_HASHES[:size]) == ROOTS[size - 1]
    state, _ = TreeState().extend(VECTOR_HASHES[:size])
    assert state.root() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    subtree = _from_leaves(VECTOR_HASHES[:size])
    assert inclusion_proof(index, size, subtree) == proof
    leaf, root = VECTOR_HASHES[index], ROOTS[size - 1]
    assert verify_inclusion(leaf, index, size, proof, root)
    # The probes of transparency-dev/merkle's corruptInclusionProof.
    wrong: list[tuple[int, int, bytes, list[bytes], bytes]] = [
        (index - 1, size, leaf, proof, root),
        (index + 1, size, leaf, proof, root),
        (index ^ 2, size, leaf, proof, root),
        (index, size * 2, leaf, proof, root),
        (index, size // 2, leaf, proof, root),
        (index, size, b"WrongLeaf", proof, root),
        (index, size, leaf, proof, EMPTY_ROOT),
        (index, size, leaf, proof, SOME_HASH),
        (index, size, leaf, [*proof, b""], root),
        (index, size, leaf, [*proof, root], root),
        (index, size, leaf, [b"", *proof], root),
        (index, size, leaf, [root, *proof], root),
    ]
    wrong += [(index, size, leaf, proof[:-1], root)] if proof else []
    wrong += [(index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root)] if proof else []
    for position in range(len(proof)):
        bad = [*proof]
        bad[position] = _flip(bad[position], 0)
        wrong.append((index, size, leaf, bad, root))
    for probe in wrong:
        assert not verify_inclusion(probe[2], probe[0], probe[1], probe[3], probe[4]), probe


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(old: int, new: int, proof: list[bytes]) -> None:
    subtree = _from_leaves(VECTOR_HASHES[:new])
    assert consistency_proof(old, new, subtree) == proof
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert verify_consistency(old, new, proof, r1, r2)
    if not proof:
        return
    # The probes of transparency-dev/merkle's corruptConsistencyProof.
    wrong: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (old - 1, new, proof, r1, r2),
        (old + 1, new, proof, r1, r2),
        (old ^ 2, new, proof, r1, r2),
        (old, new * 2, proof, r1, r2),
        (old, new // 2, proof, r1, r2),
        (old, new, proof, b"WrongRoot", r2),
        (old, new, proof, r1, b"WrongRoot"),
        (old, new, proof, r2, r1),
        (old, new, [], r1, r2),
        (old, new, [*proof, b""], r1, r2),
        (old, new, [*proof, r1], r1, r2),
        (old, new, [*proof, r2], r1, r2),
        (old, new, [b"", *proof], r1, r2),
        (old, new, [r1, *proof], r1, r2),
        (old, new, [r2, *proof], r1, r2),
        (old, new, [proof[0], *proof], r1, r2),
        (old, new, proof[:-1], r1, r2),
    ]
    for position in range(len(proof)):
        bad = [*proof]
        bad[position] = _flip(bad[position], 0)
        wrong.append((old, new, bad, r1, r2))
    for probe in wrong:
        assert not verify_consistency(*probe), probe


def test_trivial_consistency_cases() -> None:
    root = ROOTS[0]
    assert verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    assert verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[4])
    assert verify_consistency(1, 1, [], root, root)
    assert not verify_consistency(1, 1, [], root, ROOTS[1])  # same size, other root
    assert not verify_consistency(0, 5, [], root, ROOTS[4])  # size 0 must be the empty root
    assert not verify_consistency(0, 5, [EMPTY_ROOT], EMPTY_ROOT, ROOTS[4])
    assert not verify_consistency(1, 1, [root], root, root)
    assert not verify_consistency(2, 1, [], root, root)  # time travel
    assert not verify_consistency(1, 2, [], root, ROOTS[1])  # step 1: empty path
    assert consistency_proof(0, 5, _from_leaves(VECTOR_HASHES)) == []
    assert consistency_proof(5, 5, _from_leaves(VECTOR_HASHES)) == []


def test_bad_arguments() -> None:
    subtree = _from_leaves(VECTOR_HASHES)
    for index, size in ((0, 0), (1, 1), (-1, 3), (8, 8)):
        with pytest.raises(ValueError, match="not in a tree"):
            inclusion_proof(index, size, subtree)
        assert not verify_inclusion(VECTOR_HASHES[0], index, size, [], ROOTS[0])
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(3, 2, subtree)
    with pytest.raises(ValueError, match="bad range"):
        perfect_subtrees(3, 2)
    with pytest.raises(ValueError, match="not a subtree"):
        range_hash(1, 4, lambda level, index: EMPTY_ROOT)
    with pytest.raises(ValueError, match="empty"):
        range_hash(2, 2, lambda level, index: EMPTY_ROOT)
    with pytest.raises(ValueError, match="32 bytes"):
        TreeState().extend([b"short"])
    with pytest.raises(ValueError, match="32 bytes"):
        TreeState().append(b"short")
    with pytest.raises(ValueError, match="roots"):
        TreeState(3, (EMPTY_ROOT,))
    # Hashes of the wrong length never verify (a one-leaf tree's root is its leaf hash).
    assert not verify_inclusion(b"", 0, 1, [], b"")


def test_perfect_subtrees_examples() -> None:
    assert perfect_subtrees(0, 0) == []
    assert perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_subtrees(5, 13) == [(0, 5), (1, 3), (2, 2), (0, 12)]
    assert perfect_subtrees(8, 13) == [(2, 2), (0, 12)]


# -- properties -------------------------------------------------------------------------------

SIZES = st.integers(min_value=1, max_value=300)


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(SIZES)
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def _two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(min_value=2, max_value=300))
    return draw(st.integers(min_value=1, max_value=new - 1)), new


@settings(max_examples=150, deadline=None)
@given(_tree_and_index(), st.data())
def test_inclusion_proofs_verify_and_catch_tampering(
    case: tuple[int, int], data: st.DataObject
) -> None:
    size, index = case
    hashes = _hashes(size)
    root, leaf = _mth(hashes), hashes[index]
    proof = inclusion_proof(index, size, _from_leaves(hashes))
    assert verify_inclusion(leaf, index, size, proof, root)
    byte = data.draw(st.integers(0, 31), label="byte")
    assert not verify_inclusion(_flip(leaf, byte), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, _flip(root, byte))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof]
        bad[position] = _flip(bad[position], byte)
        assert not verify_inclusion(leaf, index, size, bad, root)
    other = data.draw(st.integers(0, 2 * size), label="other index")
    if other != index:  # the index is bound by the root: no other index verifies
        assert not verify_inclusion(leaf, other, size, proof, root)
    # A size with another path shape fails; one with the same shape (e.g. leaf 0 of 3 or of 4)
    # cannot be told apart by any RFC 9162 verifier: the size must come from the checkpoint.
    other_size = data.draw(st.integers(1, 2 * size), label="other size")
    same_shape = other_size > index and _sides(index, other_size) == _sides(index, size)
    assert verify_inclusion(leaf, index, other_size, proof, root) == same_shape


@settings(max_examples=150, deadline=None)
@given(_two_sizes(), st.data())
def test_consistency_proofs_verify_and_catch_tampering(
    sizes: tuple[int, int], data: st.DataObject
) -> None:
    old, new = sizes
    hashes = _hashes(new)
    r1, r2 = _mth(hashes[:old]), _mth(hashes)
    proof = consistency_proof(old, new, _from_leaves(hashes))
    assert verify_consistency(old, new, proof, r1, r2)
    byte = data.draw(st.integers(0, 31), label="byte")
    assert not verify_consistency(old, new, proof, _flip(r1, byte), r2)
    assert not verify_consistency(old, new, proof, r1, _flip(r2, byte))
    position = data.draw(st.integers(0, len(proof) - 1), label="element")
    bad = [*proof]
    bad[position] = _flip(bad[position], byte)
    assert not verify_consistency(old, new, bad, r1, r2)
    other_old = data.draw(st.integers(0, new), label="other old size")
    if other_old != old:  # the old size is bound by the old root
        assert not verify_consistency(other_old, new, proof, r1, r2)
    other_new = data.draw(st.integers(old + 1, 2 * new), label="other new size")
    same_shape = _roles(old, other_new) == _roles(old, new)
    assert verify_consistency(old, other_new, proof, r1, r2) == same_shape


def _store(nodes: list[Node]) -> dict[tuple[int, int], bytes]:
    store: dict[tuple[int, int], bytes] = {}
    for level, index, digest in nodes:
        assert (level, index) not in store, "a node is emitted once"
        store[(level, index)] = digest
    return store


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8))
def test_builder_matches_mth_and_serves_proofs(batches: list[int]) -> None:
    hashes = _hashes(sum(batches))
    state, nodes, done = TreeState(), [], 0
    for count in batches:  # mixed batch sizes, then single appends for the last batch
        state, created = state.extend(hashes[done : done + count])
        nodes += created
        done += count
        assert state.root() == _mth(hashes[:done])
    store = _store(nodes)
    size = state.size
    # Exactly the complete aligned subtrees are stored, each with its MTH.
    expected = {
        (level, index) for level in range(size.bit_length()) for index in range(size >> level)
    }
    assert set(store) == expected
    for (level, index), digest in store.items():
        assert digest == _mth(hashes[index << level : (index + 1) << level])
    assert TreeState.from_nodes(size, lambda lvl, idx: store[(lvl, idx)]) == state

    def served(start: int, end: int) -> bytes:
        return range_hash(start, end, lambda lvl, idx: store[(lvl, idx)])

    reference = _from_leaves(hashes)
    for index in range(size):
        assert inclusion_proof(index, size, served) == inclusion_proof(index, size, reference)
    for old in range(size + 1):
        assert consistency_proof(old, size, served) == consistency_proof(old, size, reference)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=1, max_value=300),
    st.integers(min_value=0, max_value=NONE_KEPT),
)
def test_keep_from_keeps_exactly_the_nodes_of_that_level_and_up(
    before: int, count: int, keep_from: int
) -> None:
    hashes = _hashes(before + count)
    start, _ = TreeState().extend(hashes[:before])
    full_state, full = start.extend(hashes[before:])
    kept_state, kept = start.extend(hashes[before:], keep_from=keep_from)
    assert kept_state == full_state
    assert kept == [node for node in full if node[0] >= keep_from]  # same order too


def test_single_appends_match_every_prefix() -> None:
    hashes = _hashes(130)
    state, nodes = TreeState(), []
    for count, digest in enumerate(hashes, start=1):
        state, created = state.append(digest)
        nodes += created
        assert state.root() == root_from_leaves(hashes[:count]) == _mth(hashes[:count])
    batch, batch_nodes = TreeState().extend(hashes)
    assert batch == state
    assert sorted(batch_nodes) == sorted(nodes)


def test_proofs_read_logarithmically_many_nodes() -> None:
    size = 1000
    _state, nodes = TreeState().extend(_hashes(size))
    store = _store(nodes)
    reads: list[tuple[int, int]] = []

    def node(level: int, index: int) -> bytes:
        reads.append((level, index))
        return store[(level, index)]

    def served(start: int, end: int) -> bytes:
        return range_hash(start, end, node)

    for index in range(0, size, 37):
        reads.clear()
        inclusion_proof(index, size, served)
        assert len(reads) <= 2 * size.bit_length()
    for old in range(1, size, 37):
        reads.clear()
        consistency_proof(old, size, served)
        assert len(reads) <= 2 * size.bit_length()
