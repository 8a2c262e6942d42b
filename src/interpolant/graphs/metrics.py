"""The field's graph-generation metrics: GraphRNN/GRAN/GDSS MMDs, validity, uniqueness, novelty.

**MMD of graph statistics** (You et al. 2018, GraphRNN; kept by GRAN and GDSS). Each graph gives
a vector s(G): its degree histogram, its histogram of clustering coefficients (100 bins on
[0, 1]), its mean node orbit counts (15 orbits of 2-4-node graphlets, ORCA's output summed over
nodes and divided by n), or its normalised-Laplacian spectrum histogram (200 bins on
[-1e-5, 2]). Histograms are normalised to sum 1. Between a reference set {s_i} (m graphs) and a
generated set {t_j} (n graphs) the reported number is the *biased* squared MMD

    MMD^2 = 1/m^2 sum_ii' k(s_i, s_i') + 1/n^2 sum_jj' k(t_j, t_j') - 2/(mn) sum_ij k(s_i, t_j)

(GDSS ``evaluation/mmd.py::compute_mmd``). Kernels, with the sigmas of the published code:

* Gaussian-EMD  k = exp(-EMD(x, y)^2 / (2 sigma^2)); EMD with ground distance |i - j| / scale,
  which for 1-D histograms of equal mass is sum_i |F_x(i) - F_y(i)| / scale (F the CDF).
  GDSS: degree (sigma 1, scale 1), clustering (sigma 0.1, scale 100 = bins), spectral (1, 1).
* Gaussian (L2) k = exp(-||x - y||^2 / (2 sigma^2)); GDSS/GraphRNN: orbits, sigma 30, raw counts.
* Gaussian-TV   k = exp(-TV(x, y)^2 / (2 sigma^2)), TV = sum |x - y| / 2 (GRAN's default):
  degree sigma 1, clustering 0.1, orbit 30 (raw counts), spectral 1.

``protocol="gdss"`` (the default) uses the first two, ``protocol="gran"`` Gaussian-TV throughout.
As in GDSS, generated graphs with no nodes are dropped before the statistics.

Orbit counts come from :mod:`.orbits` (pure Python; ORCA / ``orca-graphlets`` is not installable
here, and the counts are checked against brute-force enumeration in the tests).

**Uniqueness and novelty** of graphs use exact isomorphism: candidates are grouped by their
Weisfeiler-Lehman hash (``nx.weisfeiler_lehman_graph_hash``) and confirmed by
``nx.is_isomorphic``. **Molecules**: validity without correction (RDKit sanitisation succeeds
on the generated graph as is), uniqueness (distinct canonical SMILES among the valid ones) and
novelty (MOSES: fraction of the distinct valid ones not in the training set). NSPDK MMD is in
:mod:`.nspdk` (pure Python, EDeN's kernel without hash collisions). FCD is not computed: it needs
ChemNet's trained weights, which ``fcd_torch`` downloads at run time, and nothing is downloaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import UserError
from .convert import canonical_smiles, require_networkx
from .orbits import orbit_counts

Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: (kernel name, sigma, distance scale, normalise as histogram) per statistic and protocol.
PROTOCOLS: dict[str, dict[str, tuple[str, float, float, bool]]] = {
    "gdss": {
        "degree": ("emd", 1.0, 1.0, True),
        "clustering": ("emd", 0.1, 100.0, True),
        "orbit": ("gaussian", 30.0, 1.0, False),
        "spectral": ("emd", 1.0, 1.0, True),
    },
    "gran": {
        "degree": ("tv", 1.0, 1.0, True),
        "clustering": ("tv", 0.1, 1.0, True),
        "orbit": ("tv", 30.0, 1.0, False),
        "spectral": ("tv", 1.0, 1.0, True),
    },
}
STATISTICS: tuple[str, ...] = ("degree", "clustering", "orbit", "spectral")
CLUSTERING_BINS = 100
SPECTRAL_BINS = 200


# ---- statistics of one graph ----------------------------------------------------------------
def degree_histogram(g: Any) -> np.ndarray:
    """``nx.degree_histogram``: counts of degree 0, 1, ..., max degree."""
    return np.asarray(require_networkx().degree_histogram(g), dtype=np.float64)


def clustering_histogram(g: Any, bins: int = CLUSTERING_BINS) -> np.ndarray:
    """Histogram of the local clustering coefficients on ``bins`` bins of [0, 1]."""
    coeffs = list(require_networkx().clustering(g).values())
    return np.histogram(coeffs, bins=bins, range=(0.0, 1.0))[0].astype(np.float64)


def orbit_statistic(g: Any) -> np.ndarray:
    """The 15 node orbit counts summed over nodes and divided by n (GraphRNN's graph vector)."""
    nx = require_networkx()
    if g.number_of_nodes() == 0:
        return np.zeros(15)
    a = nx.to_numpy_array(g, weight=None)
    return orbit_counts(a).sum(axis=0) / g.number_of_nodes()


def spectral_histogram(g: Any, bins: int = SPECTRAL_BINS) -> np.ndarray:
    """Histogram of the normalised-Laplacian eigenvalues on ``bins`` bins of [-1e-5, 2]."""
    nx = require_networkx()
    lap = nx.normalized_laplacian_matrix(g).toarray()
    eigs = np.linalg.eigvalsh(lap)
    return np.histogram(eigs, bins=bins, range=(-1e-5, 2))[0].astype(np.float64)


STATISTIC_FUNCTIONS: dict[str, Callable[[Any], np.ndarray]] = {
    "degree": degree_histogram,
    "clustering": clustering_histogram,
    "orbit": orbit_statistic,
    "spectral": spectral_histogram,
}


# ---- kernels (vectorised over all pairs) ----------------------------------------------------
def _pad(samples: Sequence[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(samples), width))
    for i, s in enumerate(samples):
        out[i, : len(s)] = s
    return out


def gaussian_emd(
    x: np.ndarray, y: np.ndarray, sigma: float = 1.0, scale: float = 1.0
) -> np.ndarray:
    """exp(-EMD^2 / 2 sigma^2) for all pairs of rows of x (m, d) and y (n, d) of equal mass."""
    fx, fy = np.cumsum(x, axis=1), np.cumsum(y, axis=1)
    emd = np.abs(fx[:, None, :] - fy[None, :, :]).sum(-1) / scale
    return np.exp(-(emd**2) / (2 * sigma**2))


def gaussian_tv(x: np.ndarray, y: np.ndarray, sigma: float = 1.0, scale: float = 1.0) -> np.ndarray:
    """exp(-TV^2 / 2 sigma^2), TV = sum |x - y| / 2, for all pairs of rows."""
    del scale
    tv = np.abs(x[:, None, :] - y[None, :, :]).sum(-1) / 2.0
    return np.exp(-(tv**2) / (2 * sigma**2))


def gaussian_l2(x: np.ndarray, y: np.ndarray, sigma: float = 1.0, scale: float = 1.0) -> np.ndarray:
    """exp(-||x - y||^2 / 2 sigma^2) for all pairs of rows."""
    del scale
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "emd": gaussian_emd,
    "tv": gaussian_tv,
    "gaussian": gaussian_l2,
}


def compute_mmd(
    samples1: Sequence[np.ndarray],
    samples2: Sequence[np.ndarray],
    kernel: str = "emd",
    *,
    sigma: float = 1.0,
    scale: float = 1.0,
    is_hist: bool = True,
) -> float:
    """The biased squared MMD between two sets of vectors (padded with zeros to one length)."""
    if not samples1 or not samples2:
        raise UserError("compute_mmd: both sets need at least one graph")
    if kernel not in KERNELS:
        raise UserError(f"compute_mmd: unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    width = max(max(len(s) for s in samples1), max(len(s) for s in samples2))
    a, b = _pad(samples1, width), _pad(samples2, width)
    if is_hist:
        a = a / a.sum(1, keepdims=True)
        b = b / b.sum(1, keepdims=True)
    k = KERNELS[kernel]
    kw = {"sigma": sigma, "scale": scale}
    return float(k(a, a, **kw).mean() + k(b, b, **kw).mean() - 2 * k(a, b, **kw).mean())


def statistic_mmd(
    reference: Sequence[Any], generated: Sequence[Any], statistic: str, protocol: str = "gdss"
) -> float:
    """MMD^2 of one statistic (``degree``, ``clustering``, ``orbit``, ``spectral``)."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown MMD protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if statistic not in STATISTIC_FUNCTIONS:
        raise UserError(f"unknown graph statistic {statistic!r}; choose from {list(STATISTICS)}")
    generated = [g for g in generated if g.number_of_nodes() > 0]  # as GDSS: drop empty graphs
    if not generated:
        raise UserError("graph MMD: every generated graph is empty")
    fn = STATISTIC_FUNCTIONS[statistic]
    kernel, sigma, scale, is_hist = PROTOCOLS[protocol][statistic]
    return compute_mmd(
        [fn(g) for g in reference],
        [fn(g) for g in generated],
        kernel,
        sigma=sigma,
        scale=scale,
        is_hist=is_hist,
    )


def graph_mmds(
    reference: Sequence[Any],
    generated: Sequence[Any],
    statistics: Sequence[str] = ("degree", "clustering", "orbit"),
    protocol: str = "gdss",
) -> dict[str, float]:
    """{statistic: MMD^2} between two lists of networkx graphs (GDSS's table: deg, clus, orbit)."""
    return {s: statistic_mmd(reference, generated, s, protocol) for s in statistics}


# ---- validity, uniqueness, novelty ----------------------------------------------------------
def _isomorphism_classes(graphs: Sequence[Any]) -> list[int]:
    """A class id per graph: equal ids exactly when the graphs are isomorphic."""
    nx = require_networkx()
    buckets: dict[str, list[tuple[int, Any]]] = {}
    ids: list[int] = []
    next_id = 0
    for g in graphs:
        with warnings.catch_warnings():  # networkx 3.5 notes that its hashes changed
            warnings.simplefilter("ignore", UserWarning)
            h = nx.weisfeiler_lehman_graph_hash(g)
        for cid, rep in buckets.get(h, []):
            if nx.is_isomorphic(g, rep):
                ids.append(cid)
                break
        else:
            buckets.setdefault(h, []).append((next_id, g))
            ids.append(next_id)
            next_id += 1
    return ids


def uniqueness(graphs: Sequence[Any]) -> float:
    """Fraction of distinct graphs up to isomorphism (number of classes / number of graphs)."""
    if not graphs:
        return 0.0
    return len(set(_isomorphism_classes(graphs))) / len(graphs)


def novelty(graphs: Sequence[Any], train: Sequence[Any]) -> float:
    """Fraction of ``graphs`` not isomorphic to any training graph."""
    if not graphs:
        return 0.0
    ids = _isomorphism_classes(list(train) + list(graphs))
    seen = set(ids[: len(train)])
    return sum(1 for i in ids[len(train) :] if i not in seen) / len(graphs)


def validity(graphs: Sequence[Any], is_valid: Callable[[Any], bool]) -> float:
    """Fraction of graphs for which ``is_valid`` holds (e.g. ``nx.is_tree``, planarity)."""
    return sum(bool(is_valid(g)) for g in graphs) / max(len(graphs), 1)


def molecule_metrics(generated: Sequence[str | None], train: Sequence[str]) -> dict[str, float]:
    """Validity w/o correction, uniqueness and novelty (MOSES definitions) of generated SMILES.

    ``generated`` holds one entry per generated graph: its SMILES, or None when RDKit could not
    sanitise it (see :func:`~.convert.to_smiles`).
    """
    n = len(generated)
    if n == 0:
        raise UserError("molecule_metrics: no generated molecules")
    valid = [s for s in (canonical_smiles(s) if s else None for s in generated) if s]
    distinct = set(valid)
    train_set = {c for c in (canonical_smiles(s) for s in train) if c}
    return {
        "validity": len(valid) / n,
        "uniqueness": len(distinct) / len(valid) if valid else 0.0,
        "novelty": len(distinct - train_set) / len(distinct) if distinct else 0.0,
    }


__all__ = [
    "KERNELS",
    "PROTOCOLS",
    "STATISTICS",
    "clustering_histogram",
    "compute_mmd",
    "degree_histogram",
    "gaussian_emd",
    "gaussian_l2",
    "gaussian_tv",
    "graph_mmds",
    "molecule_metrics",
    "novelty",
    "orbit_statistic",
    "spectral_histogram",
    "statistic_mmd",
    "uniqueness",
    "validity",
]
