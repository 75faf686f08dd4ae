"""RFC 9162 §2.1 Merkle trees: hashes, proofs, their verification, and incremental appends.

Pure: values in, values out. Proof generation reads the tree only through a callable,

    subtree(start, end) -> MTH(D[start:end])

so a store can answer it from the hashes of complete aligned subtrees ("nodes"): node
(level, index) covers leaves [index * 2^level, (index + 1) * 2^level). The ranges that
`inclusion_proof` and `consistency_proof` ask for are always of two kinds:

- a perfect aligned subtree (length 2^j, start a multiple of 2^j): one node lookup;
- at most one range [start, size) running to the right edge of the tree, whose start is
  aligned to the largest power of two below its length: `perfect_subtrees(start, size)`
  splits it into O(log n) nodes, which `range_hash` folds into the range's MTH.

So a proof costs O(log n) node reads. `TreeState` appends leaf hashes to a tree known only by
its right frontier (the O(log n) roots of `perfect_subtrees(0, size)`), returns the new nodes to
store, and gives the root in O(log n).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Final, TypeAlias

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NONE_KEPT",
    "Node",
    "NodeSource",
    "SubtreeSource",
    "TreeState",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "range_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
NONE_KEPT: Final = 64
"""`extend(..., keep_from=NONE_KEPT)` keeps no node: no tree of < 2^64 leaves has that level."""
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()  # §2.1.1: MTH({}) = HASH()

SubtreeSource: TypeAlias = Callable[[int, int], bytes]
"""subtree(start, end) -> MTH(D[start:end]), for the ranges the proof algorithms ask for."""
NodeSource: TypeAlias = Callable[[int, int], bytes]
"""node(level, index) -> the hash of the complete aligned subtree at (level, index)."""
Node: TypeAlias = tuple[int, int, bytes]
"""(level, index, hash) of a complete aligned subtree; level 0 holds the leaf hashes."""

_sha256: Final = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """§2.1.1: MTH({d0}) = HASH(0x00 || d0)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """§2.1.1: HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """§2.1.1: k, the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (§2.1.1), EMPTY_ROOT for none.

    Pairing neighbours level by level and carrying an odd last node up unchanged builds the
    same tree as the recursive split at k of §2.1.1.
    """
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        carry = [level[-1]] if len(level) % 2 else []
        level = _parents(level) + carry
    return level[0]


def _parents(row: list[bytes]) -> list[bytes]:
    """node_hash of each neighbour pair (row[0], row[1]), (row[2], row[3]), ...; an odd last
    node has no sibling yet and is left to the caller."""
    pairs = iter(row)
    return [_sha256(b"\x01" + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The aligned decomposition of leaves [start, end) as (level, index) nodes, left to right.

    Each node is the largest complete aligned subtree that starts where the previous ended
    and fits: O(log n) of them. Raises ValueError unless 0 <= start <= end.
    """
    if not 0 <= start <= end:
        raise ValueError(f"bad range [{start}, {end})")
    nodes: list[tuple[int, int]] = []
    while start < end:
        fits = 1 << ((end - start).bit_length() - 1)
        size = min(start & -start, fits) if start else fits
        level = size.bit_length() - 1
        nodes.append((level, start >> level))
        start += size
    return nodes


def range_hash(start: int, end: int, node: NodeSource) -> bytes:
    """MTH(D[start:end]) from the nodes of `perfect_subtrees(start, end)`.

    Valid when that decomposition is the §2.1.1 split of D[start:end], i.e. start is 0 or
    aligned to the largest power of two <= end - start: true of every range the proof
    algorithms ask for. Raises ValueError for any other range, or an empty one.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or bad range [{start}, {end})")
    if start and start & -start < 1 << ((end - start).bit_length() - 1):
        raise ValueError(f"range [{start}, {end}) is not a subtree of the RFC 9162 split")
    hashes = [node(level, index) for level, index in perfect_subtrees(start, end)]
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = _sha256(b"\x01" + left + root).digest()  # §2.1.1: the right part is the rest
    return root


def inclusion_proof(index: int, size: int, subtree: SubtreeSource) -> list[bytes]:
    """§2.1.3.1 PATH(index, D[0:size]): the audit path, leaf level first.

    Raises ValueError unless 0 <= index < size.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:  # PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(subtree(middle, end))
            end = middle
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(subtree(start, middle))
            start = middle
    path.reverse()  # built root-first; the path lists the leaf's sibling first
    return path


def consistency_proof(old_size: int, new_size: int, subtree: SubtreeSource) -> list[bytes]:
    """§2.1.4.1 PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true), deepest node first.

    Empty when old_size is 0 or equal to new_size. Raises ValueError unless
    0 <= old_size <= new_size.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end, whole = 0, new_size, True  # SUBPROOF(m - start, D[start:end], whole)
    while old_size != end:
        middle = start + _split(end - start)
        if old_size <= middle:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(subtree(middle, end))
            end = middle
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(subtree(start, middle))
            start, whole = middle, False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}; with b true it is {}
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


def _hashes_ok(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """§2.1.3.2: True when `proof` shows leaf hash `leaf` at `index` in the tree `root`."""
    if not 0 <= index < size or not _hashes_ok(leaf, root, *proof):
        return False  # step 1 (and every hash must be a SHA-256 output)
    fn, sn = index, size - 1  # step 2
    r = leaf  # step 3
    for p in proof:  # step 4
        if sn == 0:
            return False  # 4.a
        if fn & 1 or fn == sn:  # 4.b
            r = node_hash(p, r)  # 4.b.i
            while not fn & 1 and fn != 0:  # 4.b.ii
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)  # 4.b otherwise
        fn, sn = fn >> 1, sn >> 1  # 4.c
    return sn == 0 and hmac.compare_digest(r, root)  # step 5


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """§2.1.4.2: True when `proof` shows tree (new_size, new_root) extends (old_size, old_root).

    Sizes 0 and old == new need no proof (§2.1.4.1): the proof must be empty, and the old root
    must be EMPTY_ROOT, respectively equal to the new root.
    """
    if not 0 <= old_size <= new_size or not _hashes_ok(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if not proof:
        return False  # step 1
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # step 2: first is an exact power of 2
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False  # 6.a
        if fn & 1 or fn == sn:  # 6.b
            fr = node_hash(c, fr)  # 6.b.i
            sr = node_hash(c, sr)  # 6.b.ii
            while not fn & 1 and fn != 0:  # 6.b.iii
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)  # 6.b otherwise
        fn, sn = fn >> 1, sn >> 1  # 6.c
    # step 7
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


@dataclass(frozen=True, slots=True)
class TreeState:
    """A tree of `size` leaves known by its right frontier: the roots of
    `perfect_subtrees(0, size)`, largest (leftmost) first, one per set bit of size."""

    size: int = 0
    frontier: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.frontier) != self.size.bit_count():
            raise ValueError(f"a tree of size {self.size} has {self.size.bit_count()} roots")
        if not _hashes_ok(*self.frontier):
            raise ValueError("frontier hashes must be 32 bytes")

    @classmethod
    def from_nodes(cls, size: int, node: NodeSource) -> TreeState:
        """Load the frontier of a stored tree: one node read per set bit of size."""
        return cls(size, tuple(node(lvl, idx) for lvl, idx in perfect_subtrees(0, size)))

    def root(self) -> bytes:
        """MTH of the whole tree (§2.1.1): the frontier folded right to left."""
        if not self.frontier:
            return EMPTY_ROOT
        root = self.frontier[-1]
        for left in reversed(self.frontier[:-1]):
            root = _sha256(b"\x01" + left + root).digest()
        return root

    def append(self, leaf: bytes) -> tuple[TreeState, list[Node]]:
        """`extend` with one leaf hash, as a binary counter's carry: each set low bit of
        size is a root that the new node completes. Raises ValueError unless 32 bytes."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("leaf hashes must be 32 bytes")
        size, frontier = self.size, list(self.frontier)
        created: list[Node] = [(0, size, leaf)]
        level, index, h = 0, size, leaf
        while size >> level & 1:  # the lowest root is the left sibling of h
            h = _sha256(b"\x01" + frontier.pop() + h).digest()
            level, index = level + 1, index >> 1
            created.append((level, index, h))
        frontier.append(h)
        return _trusted(size + 1, tuple(frontier)), created

    def extend(
        self, leaves: Sequence[bytes], *, keep_from: int = 0
    ) -> tuple[TreeState, list[Node]]:
        """Append leaf hashes; return the new state and every newly complete node of level
        `keep_from` or higher (the default: all of them; a store keeping only higher levels,
        or a verifier keeping none, skips building the rest).

        The nodes are (level, index, hash), the lowest kept level first, then each level
        upward, each level left to right. Raises ValueError for a hash not 32 bytes.
        """
        if not _hashes_ok(*leaves):
            raise ValueError("leaf hashes must be 32 bytes")
        size = self.size
        old = dict(zip(_set_bits_high_first(size), self.frontier, strict=True))
        new_frontier: dict[int, bytes] = {}
        created: list[Node] = []
        level, first, row = 0, size, list(leaves)  # row: new nodes at `level`, from `first`
        while row:
            if level >= keep_from:
                created.extend(zip(repeat(level), range(first, first + len(row)), row))
            if level in old:  # that root is the left sibling of row[0] (its index is even)
                row.insert(0, old.pop(level))
                first -= 1
            if len(row) % 2:
                new_frontier[level] = row.pop()  # incomplete at this level: a new root
            row = _parents(row)
            level, first = level + 1, first // 2
        new_frontier.update(old)  # untouched higher roots stay
        new_size = size + len(leaves)
        frontier = tuple(new_frontier[lvl] for lvl in _set_bits_high_first(new_size))
        return _trusted(new_size, frontier), created


def _trusted(size: int, frontier: tuple[bytes, ...]) -> TreeState:
    """A TreeState built by this module: consistent by construction, so not re-checked."""
    state = object.__new__(TreeState)
    object.__setattr__(state, "size", size)
    object.__setattr__(state, "frontier", frontier)
    return state


def _set_bits_high_first(n: int) -> list[int]:
    return [bit for bit in range(n.bit_length() - 1, -1, -1) if n >> bit & 1]
