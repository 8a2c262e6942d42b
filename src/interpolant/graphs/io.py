"""Saving and loading GDSS and PARD runs, writing sampled graphs, and pictures of graphs and
molecules.

A run folder holds ``model.safetensors`` (weights, never pickled code), ``config.json`` (the
method, the model's options, the data kind, the atoms of molecule runs, the training and test
graphs as edge lists or SMILES, so that ``sample`` draws node counts from the training graphs and
``eval`` measures against the held-out ones). A PARD run stores its denoiser and block-size
predictor under the prefixes ``denoiser.`` and ``sizes.`` and the two marginals as the tensors
``m`` and ``m_nodes``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingFileError, UserError
from .convert import require_networkx, require_rdkit
from .gdss import GDSS
from .pard_train import PARD

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def edge_lists(graphs: Sequence[Any]) -> list[dict[str, Any]]:
    """JSON-ready ``{"nodes": n, "edges": [[u, v], ...]}`` of graphs with nodes 0..n-1."""
    nx = require_networkx()
    out = []
    for g in graphs:
        g = nx.convert_node_labels_to_integers(g)
        out.append({"nodes": g.number_of_nodes(), "edges": [[int(u), int(v)] for u, v in g.edges]})
    return out


def graphs_from_edge_lists(items: Sequence[dict[str, Any]]) -> list[Any]:
    nx = require_networkx()
    graphs = []
    for item in items:
        g = nx.Graph()
        g.add_nodes_from(range(int(item["nodes"])))
        g.add_edges_from(tuple(e) for e in item["edges"])
        graphs.append(g)
    return graphs


def save_run(folder: str | Path, model: GDSS, meta: dict[str, Any]) -> Path:
    """Write the weights and ``config.json`` (``meta`` plus the model's options)."""
    from safetensors.torch import save_file

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, root / WEIGHTS)
    (root / CONFIG).write_text(json.dumps(meta, indent=1) + "\n")
    return root


def pard_options(model: PARD) -> dict[str, Any]:
    """The settings that rebuild a :class:`~.pard_train.PARD` model's networks."""
    trunk = model.denoiser.trunk
    return {
        "edge_classes": trunk.edge_classes,
        "node_classes": trunk.node_classes,
        "channels": model.denoiser.head.in_features,
        "layers": len(trunk.layers),
        "size_layers": len(model.sizes.trunk.layers),
        "max_size": model.sizes.max_size,
        "max_hops": model.max_hops,
        "steps": model.steps,
        "max_nodes": model.max_nodes,
        "valences": trunk.valences.tolist() if trunk.extra else None,
        "bond_orders": trunk.bond_orders.tolist() if trunk.extra else None,
    }


def save_pard_run(folder: str | Path, model: PARD, meta: dict[str, Any]) -> Path:
    """Write a PARD run: both networks' weights, the marginals and ``config.json``."""
    from safetensors.torch import save_file

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    tensors = {f"denoiser.{k}": v for k, v in model.denoiser.state_dict().items()}
    tensors |= {f"sizes.{k}": v for k, v in model.sizes.state_dict().items()}
    tensors |= {"m": model.m, "m_nodes": model.m_nodes}
    save_file({k: v.contiguous() for k, v in tensors.items()}, root / WEIGHTS)
    meta = meta | {"method": "pard", "pard": pard_options(model)}
    (root / CONFIG).write_text(json.dumps(meta, indent=1) + "\n")
    return root


def _load_pard(tensors: dict[str, Any], opts: dict[str, Any]) -> PARD:
    from .pard_nets import BlockDenoiser, BlockSizePredictor

    c_e, c_x, ch = opts["edge_classes"], opts["node_classes"], opts["channels"]
    vals, orders = opts.get("valences"), opts.get("bond_orders")  # None: runs without them
    denoiser = BlockDenoiser(c_e, ch, opts["layers"], c_x, vals, orders)
    sizes = BlockSizePredictor(opts["max_size"], ch, opts["size_layers"], c_e, c_x, vals, orders)
    for net, prefix in ((denoiser, "denoiser."), (sizes, "sizes.")):
        net.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
        net.eval()
    return PARD(
        denoiser,
        sizes,
        tensors["m"],
        opts["max_hops"],
        opts["steps"],
        opts["max_nodes"],
        tensors["m_nodes"],
    )


def load_run(folder: str | Path) -> tuple[GDSS | PARD, dict[str, Any]]:
    """(model, meta) of a run folder written by :func:`save_run` (GDSS) or
    :func:`save_pard_run` (PARD; ``meta["method"] == "pard"``)."""
    from safetensors.torch import load_file

    root = Path(folder)
    if not (root / CONFIG).is_file() or not (root / WEIGHTS).is_file():
        raise MissingFileError(
            f"{root} is not a graphs run (needs {CONFIG} and {WEIGHTS}); make one with "
            "`interpolant graphs train`"
        )
    meta = json.loads((root / CONFIG).read_text())
    if meta.get("method") == "pard":
        return _load_pard(load_file(root / WEIGHTS), meta["pard"]), meta
    model = GDSS(meta["features"], meta["max_nodes"], molecule=meta["molecule"], **meta["model"])
    model.load_state_dict(load_file(root / WEIGHTS))
    return model.eval(), meta


def write_edge_lists(graphs: Sequence[Any], folder: str | Path) -> list[Path]:
    """One ``graph_NNN.edgelist`` per graph (``u v`` per line; isolated nodes are listed as
    ``# nodes: n`` in the header line so the node count survives)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, g in enumerate(graphs):
        p = root / f"graph_{i:03d}.edgelist"
        p.write_text(
            f"# nodes: {g.number_of_nodes()}\n" + "".join(f"{u} {v}\n" for u, v in g.edges)
        )
        paths.append(p)
    return paths


def plot_graphs(graphs: Sequence[Any], out: str | Path, ncols: int | None = None) -> Path:
    """A PNG grid of drawn graphs (spring layout, fixed seed)."""
    from ..plots import _pyplot, _save

    nx = require_networkx()
    if not graphs:
        raise UserError("plot_graphs: no graphs to draw")
    plt = _pyplot()
    ncols = ncols or math.ceil(math.sqrt(len(graphs)))
    nrows = math.ceil(len(graphs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, g in zip(axes.flat, graphs, strict=False):
        nx.draw_networkx(
            g, pos=nx.spring_layout(g, seed=0), ax=ax, node_size=25, with_labels=False, width=0.6
        )
        ax.set_title(f"n={g.number_of_nodes()} m={g.number_of_edges()}", fontsize=7)
    return _save(fig, out)


def plot_molecules(smiles: Sequence[str | None], out: str | Path) -> Path:
    """A PNG grid of the valid molecules (RDKit ``MolsToGridImage``)."""
    chem = require_rdkit()
    from rdkit.Chem import Draw

    mols = [chem.MolFromSmiles(s) for s in smiles if s]
    mols = [m for m in mols if m is not None]
    if not mols:
        raise UserError("plot_molecules: no valid molecule to draw")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    Draw.MolsToGridImage(mols[:48], molsPerRow=6, subImgSize=(180, 180)).save(path)
    return path


__all__ = [
    "edge_lists",
    "graphs_from_edge_lists",
    "load_run",
    "pard_options",
    "plot_graphs",
    "plot_molecules",
    "save_pard_run",
    "save_run",
    "write_edge_lists",
]
