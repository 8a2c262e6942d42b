"""``interpolant graphs``: train GDSS or PARD on graphs or molecules, sample, and evaluate.

interpolant graphs train community --out runs/graphs-community   (GDSS presets: community,
    grid, molecules-small; PARD presets: pard-community, pard-molecules; or --graphs FOLDER
    of edge lists / GraphML, or --smiles FILE, with --method gdss|pard)
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

#: PARD's settings for the CLI (hops 1, 20 steps per block, the width of benchmarks/graphs.py).
_PARD_MODEL: dict[str, Any] = {"max_hops": 1, "steps": 20, "channels": 32, "layers": 3}

#: preset -> (data source, method, model options, epochs)
PRESETS: dict[str, dict[str, Any]] = {
    "pard-community": {
        "method": "pard",
        "family": "community_small",
        "epochs": 200,
        "model": _PARD_MODEL,
    },
    # Kekulised bonds: on MOSES <= 12 atoms they gave validity 0.52 against 0.36 with PARD's
    # aromatic bond type at the same settings (benchmarks/results/graphs.json); --aromatic
    # switches. Molecule runs give the networks the valence features (pard_nets.py).
    "pard-molecules": {
        "method": "pard",
        "moses_atoms": 12,
        "aromatic": False,
        "epochs": 100,
        "model": _PARD_MODEL,
    },
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
    t = gsub.add_parser("train", help="train GDSS or PARD", formatter_class=formatter)
    t.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="a data + model preset")
    t.add_argument("--graphs", type=Path, help="a folder of edge lists / GraphML instead")
    t.add_argument("--smiles", type=Path, help="a SMILES file instead (molecule mode)")
    t.add_argument("--out", type=Path, required=True, help="the run folder to write")
    t.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    t.add_argument("--max-nodes", type=int, help="pad graphs to this many nodes")
    t.add_argument(
        "--method",
        choices=["gdss", "pard"],
        help="the model for --graphs / --smiles data (presets name their own)",
    )
    t.add_argument(
        "--aromatic",
        action="store_true",
        help="PARD on molecules: aromatic bonds as their own type instead of kekulised",
    )
    t.add_argument("--seed", type=int, default=0)
    s = gsub.add_parser("sample", help="sample graphs from a run", formatter_class=formatter)
    s.add_argument("run", type=Path)
    s.add_argument("--count", type=int, default=16)
    s.add_argument(
        "--steps", type=int, help="GDSS: solver steps (default 1000); PARD: steps per block"
    )
    s.add_argument("--solver", choices=["s4", "pc"], default="s4")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, help="output folder (default RUN/samples)")
    e = gsub.add_parser("eval", help="metrics of a run's samples", formatter_class=formatter)
    e.add_argument("run", type=Path)
    e.add_argument(
        "--steps", type=int, help="GDSS: solver steps (default 1000); PARD: steps per block"
    )
    e.add_argument("--seed", type=int, default=0)


def _load_training_data(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(GraphBatch, meta with train/test, model options) from a preset or the user's files."""
    from ..graphs import data as gdata
    from ..graphs.convert import AROMATIC_NH, from_networkx, from_smiles
    from ..graphs.io import edge_lists

    if sum(x is not None for x in (args.preset, args.graphs, args.smiles)) != 1:
        raise UserError(
            "graphs train: give exactly one of a preset, --graphs FOLDER, --smiles FILE"
        )
    if args.preset:
        preset: dict[str, Any] = PRESETS[args.preset]
        if args.method and args.method != preset.get("method", "gdss"):
            raise UserError(
                f"graphs train: preset {args.preset!r} trains {preset.get('method', 'gdss')}; "
                f"drop --method {args.method} or use a {args.method} preset"
            )
    elif (args.method or "gdss") == "pard":
        preset = {"method": "pard", "epochs": 100, "model": _PARD_MODEL}
    else:
        preset = {"epochs": 500, "model": {}}
    aromatic = bool(preset.get("aromatic") or args.aromatic)
    if aromatic and preset.get("method", "gdss") != "pard":
        raise UserError(
            "graphs train: --aromatic is a PARD option (GDSS's continuous adjacency holds bond "
            "orders); add --method pard"
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
        if aromatic:
            atoms = [*atoms, AROMATIC_NH]
        max_atoms = args.max_nodes or preset.get("moses_atoms") or 38
        batch, report = from_smiles(train, atoms=atoms, max_atoms=max_atoms, aromatic=aromatic)
        print(report.summary())
        meta = {
            "molecule": True,
            "atoms": atoms,
            "aromatic": aromatic,
            "train": train,
            "test": test,
        }
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


def _train_pard(
    batch: Any, meta: dict[str, Any], preset: dict[str, Any], epochs: int, args: Any
) -> int:
    """Train PARD on the training graphs of ``batch`` and write the run."""
    from ..graphs.io import save_pard_run
    from ..graphs.pard import molecule_valences
    from ..graphs.pard_train import train_pard

    typed = []
    for b in range(batch.batch_size):
        n = int(batch.mask[b].sum())
        nodes = batch.x[b, :n].argmax(-1) if meta["molecule"] else torch.zeros(n, dtype=torch.long)
        typed.append((nodes, batch.adj[b, :n, :n].round().long()))
    molecule = meta["molecule"]  # the whole vocabulary, whether or not the training set uses it
    model, losses = train_pard(
        typed,
        max_nodes=batch.max_nodes,
        epochs=epochs,
        seed=args.seed,
        node_classes=len(meta["atoms"]) if molecule else None,
        edge_classes=(5 if meta["aromatic"] else 4) if molecule else None,
        valences=molecule_valences(meta["atoms"], aromatic=meta["aromatic"]) if molecule else None,
        **preset["model"],
    )
    meta |= {"max_nodes": batch.max_nodes, "epochs": epochs, "final_loss": losses[-1]}
    save_pard_run(args.out, model, meta)
    print(f"trained PARD {epochs} epochs (final loss {losses[-1]:.3f}); wrote {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..graphs.gdss_train import train_gdss
    from ..graphs.io import save_run

    batch, meta, preset = _load_training_data(args)
    epochs = args.epochs or preset["epochs"]
    if preset.get("method") == "pard":
        return _train_pard(batch, meta, preset, epochs, args)
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


def _draw(
    model: Any, meta: dict[str, Any], count: int, steps: int | None, solver: str, seed: int
) -> Any:
    """``count`` samples as a GraphBatch (molecules: one-hot atoms, bond types in ``adj``)."""
    from ..graphs.gdss import sample
    from ..randomness import Streams

    if meta.get("method") == "pard":
        from ..graphs.pard_train import sample_pard

        out = sample_pard(model, count, seed=seed, steps=steps)
        if meta["molecule"]:
            return out.molecule_batch(meta["atoms"])
        from ..graphs.types import GraphBatch

        b = out.batch()
        return GraphBatch(b.x, (b.adj != 0).to(torch.float32), b.mask)
    steps = steps or 1000
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
        smiles = to_smiles(graphs, meta["atoms"], aromatic=meta.get("aromatic", False))
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
        from ..graphs.convert import corrected_smiles, failure_reasons
        from ..graphs.nspdk import smiles_nspdk_mmd

        atoms, aromatic = meta["atoms"], meta.get("aromatic", False)
        smiles = to_smiles(graphs, atoms, aromatic=aromatic)
        charged = to_smiles(graphs, atoms, formal_charges=True, aromatic=aromatic)
        result: dict[str, Any] = dict(molecule_metrics(smiles, meta["train"]))
        result["validity_gdss_charges"] = molecule_metrics(charged, meta["train"])["validity"]
        fixed = corrected_smiles(graphs, atoms, aromatic=aromatic)
        result["validity_with_correction"] = sum(s is not None for s in fixed) / len(fixed)
        result["nspdk"] = smiles_nspdk_mmd(test, smiles) if any(smiles) else None
        result["failures"] = failure_reasons(graphs, atoms, aromatic=aromatic)
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
