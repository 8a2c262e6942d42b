"""Node orbit counts of the graphlets with 2-4 nodes (the 15 orbits ORCA counts), in pure Python.

GraphRNN, GRAN and GDSS call ORCA (Hočevar & Demšar 2014), a C++ program built by hand; it is
not installable from the package index here, so this module counts the same quantities: for each
node v and orbit k = 0..14, the number of *induced* connected subgraphs on 2, 3 or 4 nodes in
which v sits in orbit k (Pržulj's numbering, the one ORCA prints):

====  ==========================  ===========================================
size  graphlet                    orbits (node's degree inside the graphlet)
====  ==========================  ===========================================
2     edge                        0
3     path P3                     1 (end, deg 1), 2 (middle, deg 2)
3     triangle                    3
4     path P4                     4 (end, deg 1), 5 (inner, deg 2)
4     star K_{1,3}                6 (leaf), 7 (centre)
4     cycle C4                    8
4     paw (triangle + pendant)    9 (pendant, deg 1), 10 (deg 2), 11 (deg 3)
4     diamond (K4 minus an edge)  12 (deg 2), 13 (deg 3)
4     K4                          14
====  ==========================  ===========================================

Connected induced subgraphs are enumerated once each by ESU (Wernicke 2006), so the cost grows
with their number rather than with C(n, 4).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

NUM_ORBITS = 15


def _neighbour_sets(adjacency: Sequence[Sequence[int]] | np.ndarray) -> list[set[int]]:
    a = np.asarray(adjacency) != 0
    np.fill_diagonal(a, False)
    return [set(np.flatnonzero(row).tolist()) for row in a]


def connected_subsets(nbrs: list[set[int]], k: int = 4) -> Iterator[tuple[int, ...]]:
    """Every connected node subset of size 2..k exactly once (ESU enumeration)."""

    def extend(
        sub: list[int], ext: set[int], root: int, excl: set[int]
    ) -> Iterator[tuple[int, ...]]:
        if len(sub) >= 2:
            yield tuple(sub)
        if len(sub) == k:
            return
        ext = set(ext)
        while ext:
            w = ext.pop()
            # Exclusive neighbours of w: not in sub and not adjacent to it, larger than root.
            new = {u for u in nbrs[w] if u > root and u not in excl}
            yield from extend([*sub, w], ext | new, root, excl | new | {w})

    for v in range(len(nbrs)):
        start = {u for u in nbrs[v] if u > v}
        yield from extend([v], start, v, start | {v} | nbrs[v] | set())


def _classify(sub: tuple[int, ...], nbrs: list[set[int]]) -> list[int]:
    """The orbit of each node of a connected induced subgraph ``sub`` (in order)."""
    s = set(sub)
    deg = [len(nbrs[v] & s) for v in sub]
    edges = sum(deg) // 2
    if len(sub) == 2:
        return [0, 0]
    if len(sub) == 3:
        return [3] * 3 if edges == 3 else [1 if d == 1 else 2 for d in deg]
    if edges == 3:  # path P4 or star
        if max(deg) == 3:
            return [7 if d == 3 else 6 for d in deg]
        return [4 if d == 1 else 5 for d in deg]
    if edges == 4:  # cycle C4 or paw
        if max(deg) == 2:
            return [8] * 4
        return [{1: 9, 2: 10, 3: 11}[d] for d in deg]
    if edges == 5:
        return [12 if d == 2 else 13 for d in deg]
    return [14] * 4


def orbit_counts(adjacency: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """(n, 15) int64 node orbit counts of a graph given by its dense adjacency (ORCA's output)."""
    nbrs = _neighbour_sets(adjacency)
    counts = np.zeros((len(nbrs), NUM_ORBITS), dtype=np.int64)
    for sub in connected_subsets(nbrs, 4):
        for v, orbit in zip(sub, _classify(sub, nbrs), strict=True):
            counts[v, orbit] += 1
    return counts


def orbit_counts_brute_force(adjacency: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """The same counts from all C(n, k) subsets, k = 2, 3, 4 (slow; for tests)."""
    from itertools import combinations

    nbrs = _neighbour_sets(adjacency)
    counts = np.zeros((len(nbrs), NUM_ORBITS), dtype=np.int64)
    for k in (2, 3, 4):
        for sub in combinations(range(len(nbrs)), k):
            if _is_connected(sub, nbrs):
                for v, orbit in zip(sub, _classify(sub, nbrs), strict=True):
                    counts[v, orbit] += 1
    return counts


def _is_connected(sub: tuple[int, ...], nbrs: list[set[int]]) -> bool:
    s, seen, stack = set(sub), {sub[0]}, [sub[0]]
    while stack:
        for u in nbrs[stack.pop()] & s:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return len(seen) == len(s)


__all__ = ["NUM_ORBITS", "connected_subsets", "orbit_counts", "orbit_counts_brute_force"]
