"""``interpolant graphs``: train GDSS on graphs or molecules, sample, and evaluate.

interpolant graphs train community --out runs/graphs-community   (presets: community, grid,
    molecules-small; or --graphs FOLDER of edge lists / GraphML, or --smiles FILE)
interpolant graphs sample runs/graphs-community --count 16        graphs.png + edge lists
interpolant graphs eval runs/graphs-community                     MMDs against the test split
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

#: preset -> (data source, model options, epochs)
PRESETS: dict[str, dict[str, Any]] = {
    "community": {
        "family": "community_small",
        "epochs": 1000,
        "model": {"layers": 5, "hidden": 32, "attn_dim": 32},
    },
    "grid": {
        "family": "grid_small",
        "epochs": 1000,
        "model": {"layers": 3, "hidden": 16, "attn_dim": 16},
    },
    "molecules-small": {
        "moses_atoms": 12,
        "epochs": 500,
        "model": {"layers": 3, "hidden": 16, "attn_dim": 16},
    },
}


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``graphs train|sample|eval`` to ``sub``."""
    p = sub.add_parser(
        "graphs",
        help="graph generation with GDSS (train, sample, eval)",
        formatter_class=formatter,
        description=__doc__,
    )
    gsub = p.add_subparsers(dest="graphs_command", metavar="{train,sample,eval}")
    t = gsub.add_parser("train", help="train GDSS", formatter_class=formatter)
    t.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="a data + model preset")
    t.add_argument("--graphs", type=Path, help="a folder of edge lists / GraphML instead")
    t.add_argument("--smiles", type=Path, help="a SMILES file instead (molecule mode)")
    t.add_argument("--out", type=Path, required=True, help="the run folder to write")
    t.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    t.add_argument("--max-nodes", type=int, help="pad graphs to this many nodes")
    t.add_argument("--seed", type=int, default=0)
    s = gsub.add_parser("sample", help="sample graphs from a run", formatter_class=formatter)
    s.add_argument("run", type=Path)
    s.add_argument("--count", type=int, default=16)
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--solver", choices=["s4", "pc"], default="s4")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, help="output folder (default RUN/samples)")
    e = gsub.add_parser("eval", help="metrics of a run's samples", formatter_class=formatter)
    e.add_argument("run", type=Path)
    e.add_argument("--steps", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)


def _load_training_data(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(GraphBatch, meta with train/test, model options) from a preset or the user's files."""
    from ..graphs import data as gdata
    from ..graphs.convert import from_networkx, from_smiles
    from ..graphs.io import edge_lists

    preset: dict[str, Any] = PRESETS[args.preset] if args.preset else {"epochs": 500, "model": {}}
    if sum(x is not None for x in (args.preset, args.graphs, args.smiles)) != 1:
        raise UserError(
            "graphs train: give exactly one of a preset, --graphs FOLDER, --smiles FILE"
        )
    if args.smiles is not None or "moses_atoms" in preset:
        if args.smiles is not None:
            smiles, report = gdata.read_smiles_file(args.smiles)
            print(report.summary())
            atoms = sorted({a for s in smiles for a in _atoms(s)})
            train, test = gdata.split(smiles)
        else:
            atoms = list(gdata.MOSES_ATOMS)
            train = gdata.moses_smiles("train", preset["moses_atoms"])
            test = gdata.moses_smiles("test", preset["moses_atoms"])
        max_atoms = args.max_nodes or preset.get("moses_atoms") or 38
        batch, report = from_smiles(train, atoms=atoms, max_atoms=max_atoms)
        print(report.summary())
        meta = {"molecule": True, "atoms": atoms, "train": train, "test": test}
        return batch, meta, preset
    graphs = (
        gdata.read_graph_folder(args.graphs)
        if args.graphs
        else gdata.family(preset["family"], seed=args.seed)
    )
    train, test = gdata.split(graphs)
    batch = from_networkx(train, args.max_nodes or gdata.max_nodes_of(graphs))
    meta = {"molecule": False, "train": edge_lists(train), "test": edge_lists(test)}
    return batch, meta, preset


def _atoms(smiles: str) -> list[str]:
    from ..graphs.convert import require_rdkit

    mol = require_rdkit().MolFromSmiles(smiles)
    return [a.GetSymbol() for a in mol.GetAtoms()]


def cmd_train(args: argparse.Namespace) -> int:
    from ..graphs.gdss_train import train_gdss
    from ..graphs.io import save_run

    batch, meta, preset = _load_training_data(args)
    epochs = args.epochs or preset["epochs"]
    model, losses = train_gdss(batch, epochs=epochs, seed=args.seed, **preset["model"])
    meta |= {
        "features": batch.num_features,
        "max_nodes": batch.max_nodes,
        "model": preset["model"],
        "epochs": epochs,
        "final_loss": losses[-1],
        "train_sizes": batch.num_nodes.tolist(),
    }
    save_run(args.out, model, meta)
    print(f"trained {epochs} epochs (final loss {losses[-1]:.3f}); wrote {args.out}")
    return 0


def _draw(model: Any, meta: dict[str, Any], count: int, steps: int, solver: str, seed: int) -> Any:
    from ..graphs.gdss import sample
    from ..randomness import Streams

    sizes = meta["train_sizes"]
    u = Streams(seed, torch.arange(count), "cli-graph-sizes").uniform(())
    picked = [sizes[min(int(v * len(sizes)), len(sizes) - 1)] for v in u]
    return sample(model, picked, solver=solver, steps=steps, seed=seed).graphs(meta["molecule"])


def cmd_sample(args: argparse.Namespace) -> int:
    from ..graphs.convert import to_networkx, to_smiles
    from ..graphs.io import load_run, plot_graphs, plot_molecules, write_edge_lists

    model, meta = load_run(args.run)
    graphs = _draw(model, meta, args.count, args.steps, args.solver, args.seed)
    out = args.out or args.run / "samples"
    out.mkdir(parents=True, exist_ok=True)
    if meta["molecule"]:
        smiles = to_smiles(graphs, meta["atoms"])
        (out / "molecules.smi").write_text("".join(f"{s or 'INVALID'}\n" for s in smiles))
        valid = sum(s is not None for s in smiles)
        print(f"{valid} of {len(smiles)} valid; wrote {out / 'molecules.smi'}")
        if valid:
            print(f"wrote {plot_molecules(smiles, out / 'molecules.png')}")
    else:
        nxg = to_networkx(graphs)
        write_edge_lists(nxg, out / "edgelists")
        print(
            f"wrote {len(nxg)} edge lists to {out / 'edgelists'} and "
            f"{plot_graphs(nxg, out / 'graphs.png')}"
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..graphs.convert import to_networkx, to_smiles
    from ..graphs.io import graphs_from_edge_lists, load_run
    from ..graphs.metrics import graph_mmds, molecule_metrics, novelty, uniqueness

    model, meta = load_run(args.run)
    test = meta["test"]
    graphs = _draw(model, meta, len(test), args.steps, "s4", args.seed)
    if meta["molecule"]:
        from ..graphs.convert import failure_reasons
        from ..graphs.nspdk import smiles_nspdk_mmd

        smiles = to_smiles(graphs, meta["atoms"])
        charged = to_smiles(graphs, meta["atoms"], formal_charges=True)
        result: dict[str, Any] = dict(molecule_metrics(smiles, meta["train"]))
        result["validity_gdss_charges"] = molecule_metrics(charged, meta["train"])["validity"]
        result["nspdk"] = smiles_nspdk_mmd(test, smiles) if any(smiles) else None
        result["failures"] = failure_reasons(graphs, meta["atoms"])
    else:
        gen, ref = to_networkx(graphs), graphs_from_edge_lists(test)
        result = graph_mmds(ref, gen) | {
            "uniqueness": uniqueness(gen),
            "novelty": novelty(gen, graphs_from_edge_lists(meta["train"])),
        }
    print(json.dumps(result, indent=1))
    return 0


def cmd_graphs(args: argparse.Namespace) -> int:
    commands = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}
    if args.graphs_command not in commands:
        raise UserError("interpolant graphs: give a command: train, sample or eval")
    return commands[args.graphs_command](args)


__all__ = ["PRESETS", "add_parser", "cmd_graphs"]
