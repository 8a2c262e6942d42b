"""GDSS on community-small, the small grid and MOSES molecules, against an Erdos-Renyi baseline
and the GDSS paper's reported MMDs; sampling time against the number of nodes.

Protocol (GraphRNN / GDSS): 80/20 split of the family's graphs, as many generated graphs as test
graphs with node counts drawn from the training graphs, MMD^2 with GDSS's kernels and sigmas
(Gaussian-EMD degree and clustering, Gaussian orbit with sigma 30) against the test split.
The ER baseline draws node counts the same way and p = the training graphs' pooled density.
GDSS paper, Table 1, community-small: degree 0.045, clustering 0.086, orbit 0.007.

Molecules: MOSES SMILES with <= 12 heavy atoms (435 training molecules; MOSES weighs 250-350
Da, so this is not QM9), atoms C N O F S Cl Br, kekulised bond orders; GDSS and PARD (atom and
bond types, degree-peeling blocks), 100 samples each: validity without correction (as built, and
with GDSS's decoder rule of +1 charges on N, O, S), uniqueness, novelty, NSPDK MMD against the 48
test molecules, and the reasons RDKit gives for the invalid ones. ``molecule_data`` records the
facts of the data that bound validity (aromatic fraction, charges, round-trip validity).

Timing: seconds per sampled graph per step of S4 for graphs of 10, 20, 40, 80 nodes (batch of 8,
the GDSS community network, one thread), and the 1000-step time that implies.

Run: ``.venv/bin/python benchmarks/graphs.py [--quick] [--epochs N]``; ``--markdown`` prints the
README table from benchmarks/results/graphs.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from interpolant.graphs import data as gdata
from interpolant.graphs.convert import (
    corrected_smiles,
    failure_reasons,
    from_smiles,
    to_networkx,
    to_smiles,
)
from interpolant.graphs.gdss import GDSS, sample
from interpolant.graphs.gdss_train import train_gdss
from interpolant.graphs.metrics import graph_mmds, molecule_metrics
from interpolant.graphs.nspdk import smiles_nspdk_mmd
from interpolant.graphs.pard import molecule_graphs, molecule_valences
from interpolant.graphs.pard_train import sample_pard, train_pard
from interpolant.randomness import Streams

RESULTS = Path(__file__).resolve().parent / "results" / "graphs.json"
PAPER_COMMUNITY = {"degree": 0.045, "clustering": 0.086, "orbit": 0.007}


def _sizes(train: list[Any], count: int, seed: int) -> list[int]:
    u = Streams(seed, torch.arange(count), "bench-graph-sizes").uniform(())
    return [train[min(int(v * len(train)), len(train) - 1)].number_of_nodes() for v in u]


def graph_family(name: str, epochs: int, steps: int, seed: int, model: dict) -> dict[str, Any]:
    graphs = (
        gdata.community_small(seed=seed)
        if name == "community_small"
        else gdata.family(name, 100, seed)
    )
    train, test = gdata.split(graphs)
    max_nodes = gdata.max_nodes_of(graphs)
    start = time.perf_counter()
    net, losses = train_gdss(train, epochs=epochs, max_nodes=max_nodes, seed=seed, **model)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    out = sample(net, _sizes(train, len(test), seed), steps=steps, seed=seed)
    sample_s = time.perf_counter() - start
    gen = to_networkx(out.graphs())
    er = gdata.erdos_renyi_like(train, len(test), seed=seed)
    # The floor: fresh graphs of the same family (another seed) against the test split.
    fresh = (
        gdata.community_small(len(test), seed + 1)
        if name == "community_small"
        else (gdata.family(name, len(test), seed + 1))
    )
    return {
        "graphs": len(graphs),
        "test": len(test),
        "max_nodes": max_nodes,
        "epochs": epochs,
        "steps": steps,
        "train_s": train_s,
        "sample_s": sample_s,
        "final_loss": losses[-1],
        "gdss": graph_mmds(test, gen),
        "erdos_renyi": graph_mmds(test, er),
        "data_floor": graph_mmds(test, fresh),
        "mean_edges_generated": sum(g.number_of_edges() for g in gen) / len(gen),
        "mean_edges_test": sum(g.number_of_edges() for g in test) / len(test),
    }


def molecule_data(max_atoms: int) -> dict[str, Any]:
    """Facts about the training molecules that bound validity: aromatic rings (kekulised, so a
    model must reproduce exact single/double alternation), charged atoms, and the round trip
    SMILES -> graph -> SMILES of the data itself."""
    from rdkit import Chem

    train = gdata.moses_smiles("train", max_atoms)
    mols = [Chem.MolFromSmiles(s) for s in train]
    batch, _ = from_smiles(train, atoms=gdata.MOSES_ATOMS, max_atoms=max_atoms)
    back = to_smiles(batch, gdata.MOSES_ATOMS)
    return {
        "train": len(train),
        "test": len(gdata.moses_smiles("test", max_atoms)),
        "aromatic_fraction": sum(any(a.GetIsAromatic() for a in m.GetAtoms()) for m in mols)
        / len(mols),
        "charged_fraction": sum(any(a.GetFormalCharge() for a in m.GetAtoms()) for m in mols)
        / len(mols),
        "mean_atoms": sum(m.GetNumAtoms() for m in mols) / len(mols),
        "roundtrip_validity": sum(s is not None for s in back) / len(back),
        "composition": composition(batch, gdata.MOSES_ATOMS),
    }


def composition(batch: Any, atoms: tuple[str, ...], aromatic: bool = False) -> dict[str, Any]:
    """What bounds validity, measured on graphs as built: the atom-type and bond-type fractions,
    and per atom type the share of its atoms whose bond orders sum above RDKit's neutral maximum
    (``MAX_VALENCE``; aromatic bonds count 1.5), with the share of graphs that have any."""
    from interpolant.graphs.pard import molecule_valences

    valences, orders = molecule_valences(atoms, aromatic=aromatic)
    mask = batch.mask.bool()
    kinds = batch.x.argmax(-1)
    edges = batch.adj.round().long()
    pairs = mask[:, :, None] & mask[:, None, :] & ~torch.eye(batch.max_nodes, dtype=torch.bool)
    sums = (torch.tensor(orders)[edges] * pairs).sum(-1)
    over = (sums > torch.tensor(valences)[kinds] + 1e-6) & mask
    n_atoms = int(mask.sum())
    bond_counts = torch.bincount(edges[pairs.triu(1)], minlength=len(orders))
    return {
        "atom_fractions": {
            a: int(((kinds == i) & mask).sum()) / n_atoms for i, a in enumerate(atoms)
        },
        "bond_fractions": {
            str(k): int(c) / max(1, int(bond_counts[1:].sum()))
            for k, c in enumerate(bond_counts.tolist())
            if k
        },
        "bonds_per_atom": int(bond_counts[1:].sum()) / n_atoms,
        "over_valence_share": {
            a: int((over & (kinds == i)).sum()) / max(1, int(((kinds == i) & mask).sum()))
            for i, a in enumerate(atoms)
        },
        "graphs_with_over_valence": float(over.any(-1).double().mean()),
    }


def _molecule_scores(
    batch: Any,
    train_smiles: list[str],
    test_smiles: list[str],
    atoms: tuple[str, ...] = gdata.MOSES_ATOMS,
    aromatic: bool = False,
) -> dict[str, Any]:
    """Validity without correction two ways (as built; with GDSS's +1 charges on N, O, S),
    uniqueness, novelty, NSPDK MMD against the test molecules, why the invalid ones fail, and
    apart from these the validity with GDSS's valency correction (largest fragment kept)."""
    strict = to_smiles(batch, atoms, aromatic=aromatic)
    charged = to_smiles(batch, atoms, formal_charges=True, aromatic=aromatic)
    out: dict[str, Any] = molecule_metrics(strict, train_smiles)
    out["validity_gdss_charges"] = molecule_metrics(charged, train_smiles)["validity"]
    fixed = corrected_smiles(batch, atoms, aromatic=aromatic)
    out["validity_with_correction"] = sum(s is not None for s in fixed) / len(fixed)
    out["nspdk"] = smiles_nspdk_mmd(test_smiles, strict) if any(strict) else None
    out["failures"] = failure_reasons(batch, atoms, aromatic=aromatic)
    out["fragmented"] = sum("." in s for s in strict if s) / max(1, sum(bool(s) for s in strict))
    out["examples"] = [s for s in strict if s][:8]
    out["composition"] = composition(batch, atoms, aromatic)
    return out


def molecules(
    epochs: int, steps: int, seed: int, model: dict, max_atoms: int, count: int
) -> dict[str, Any]:
    train_smiles = gdata.moses_smiles("train", max_atoms)
    test_smiles = gdata.moses_smiles("test", max_atoms)
    batch, report = from_smiles(train_smiles, atoms=gdata.MOSES_ATOMS, max_atoms=max_atoms)
    start = time.perf_counter()
    net, losses = train_gdss(batch, epochs=epochs, seed=seed, **model)
    train_s = time.perf_counter() - start
    # Atom counts drawn from the training molecules, as the node counts of the graph families.
    u = Streams(seed, torch.arange(count), "bench-graph-sizes").uniform(())
    sizes = [int(batch.num_nodes[min(int(v * len(batch)), len(batch) - 1)]) for v in u]
    start = time.perf_counter()
    out = sample(net, sizes, steps=steps, seed=seed)
    sample_s = time.perf_counter() - start
    return {
        "train": report.kept,
        "test": len(test_smiles),
        "samples": count,
        "max_atoms": max_atoms,
        "epochs": epochs,
        "steps": steps,
        "train_s": train_s,
        "sample_s": sample_s,
        "final_loss": losses[-1],
        "gdss": _molecule_scores(out.graphs(molecule=True), train_smiles, test_smiles),
    }


def pard_molecules(
    epochs: int,
    steps: int,
    seed: int,
    max_atoms: int,
    count: int,
    channels: int,
    limit: int | None = None,
    aromatic: bool = False,
    sample_seeds: tuple[int, ...] = (0,),
    valence_features: bool = True,
) -> dict[str, Any]:
    """PARD with atom and bond types on the same molecules (hops 1, ``steps`` per block).

    ``limit`` keeps only the first molecules (the data-size ablation; pass proportionally more
    epochs for the same number of optimizer steps). ``aromatic``: aromatic bonds as their own
    type (PARD's MOSES setting) instead of kekulised orders. One set of samples per seed in
    ``sample_seeds`` (seed 1 is the validation draw settings are chosen on, seed 0 the one
    reported). ``valence_features``: the networks see every atom's valency and free valence on
    the noisy graph (DiGress's extra molecular features)."""
    atoms = gdata.MOSES_AROMATIC_ATOMS if aromatic else gdata.MOSES_ATOMS
    train_smiles = gdata.moses_smiles("train", max_atoms)[:limit]
    test_smiles = gdata.moses_smiles("test", max_atoms)
    graphs = molecule_graphs(train_smiles, atoms, max_atoms, aromatic=aromatic)
    start = time.perf_counter()
    model, losses = train_pard(
        graphs,
        max_hops=1,
        steps=steps,
        epochs=epochs,
        batch_size=64,
        channels=channels,
        layers=3,
        node_classes=len(atoms),
        edge_classes=5 if aromatic else 4,
        valences=molecule_valences(atoms, aromatic=aromatic) if valence_features else None,
        seed=seed,
        progress=False,
    )
    train_s = time.perf_counter() - start
    draws: dict[str, Any] = {}
    for sample_seed in sample_seeds:
        start = time.perf_counter()
        out = sample_pard(model, count, seed=sample_seed)
        draws[str(sample_seed)] = {
            "sample_s": time.perf_counter() - start,
            "mean_blocks": float(out.blocks.double().mean()),
            "mean_atoms": float(out.mask.sum(-1).double().mean()),
            "pard": _molecule_scores(
                out.molecule_batch(atoms), train_smiles, test_smiles, atoms, aromatic
            ),
        }
    report = draws[str(sample_seeds[-1])]
    return {
        "bonds": "aromatic" if aromatic else "kekulised",
        "valence_features": valence_features,
        "train": len(graphs),
        "test": len(test_smiles),
        "samples": count,
        "max_atoms": max_atoms,
        "epochs": epochs,
        "steps_per_block": steps,
        "channels": channels,
        "train_s": train_s,
        "final_loss": losses[-1],
        "sample_seeds": list(sample_seeds),
        "by_seed": draws,
        **report,  # the last seed's draw (the evaluation seed)
    }


def timing(nodes: tuple[int, ...], steps: int, model: dict) -> dict[str, float]:
    out = {}
    for n in nodes:
        net = GDSS(10, n, **{k: v for k, v in model.items() if k != "batch_size"}).eval()
        start = time.perf_counter()
        sample(net, [n] * 8, steps=steps, seed=0)
        per_step = (time.perf_counter() - start) / (8 * steps)
        out[str(n)] = per_step
    return out


def markdown(record: dict[str, Any]) -> str:
    res = record["results"]
    lines = ["| data | model | degree | clustering | orbit |", "|---|---|---|---|---|"]
    for fam in ("community_small", "grid_small"):
        if fam not in res:
            continue
        for label, key in (
            ("GDSS (ours)", "gdss"),
            ("Erdos-Renyi", "erdos_renyi"),
            ("fresh data (floor)", "data_floor"),
        ):
            m = res[fam][key]
            lines.append(
                f"| {fam} | {label} | {m['degree']:.3f} | {m['clustering']:.3f} | "
                f"{m['orbit']:.3f} |"
            )
        if fam == "community_small":
            p = PAPER_COMMUNITY
            lines.append(
                f"| {fam} | GDSS paper | {p['degree']} | {p['clustering']} | {p['orbit']} |"
            )
    mol_rows = [
        ("molecules", "gdss", "GDSS"),
        ("pard_molecules", "pard", "PARD"),
        ("pard_molecules_100", "pard", "PARD, 100 training molecules"),
    ]
    if any(part in res for part, _, _ in mol_rows):
        lines += [
            "",
            "| MOSES <= 12 atoms | validity w/o corr. | with GDSS charges | uniqueness | novelty "
            "| NSPDK MMD |",
            "|---|---|---|---|---|---|",
        ]
    for part, key, label in mol_rows:
        if part in res and key in res[part]:
            m = res[part][key]
            nspdk = "n/a" if m.get("nspdk") is None else f"{m['nspdk']:.3f}"
            charged = m.get("validity_gdss_charges", float("nan"))
            lines.append(
                f"| {label} | {m['validity']:.2f} | {charged:.2f} | {m['uniqueness']:.2f} | "
                f"{m['novelty']:.2f} | {nspdk} |"
            )
    t = res.get("timing_s_per_graph_step", {})
    if t:
        lines.append("")
        lines.append(
            "S4 seconds per graph per step: "
            + ", ".join(f"{n} nodes {v * 1e3:.2f} ms" for n, v in t.items())
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs and steps")
    parser.add_argument("--epochs", type=int, default=1000, help="training epochs per family")
    parser.add_argument("--steps", type=int, default=1000, help="S4 sampling steps")
    parser.add_argument("--pard-epochs", type=int, default=60, help="PARD epochs on molecules")
    parser.add_argument("--pard-channels", type=int, default=32, help="PARD network width")
    parser.add_argument("--pard-steps", type=int, default=20, help="PARD diffusion steps/block")
    parser.add_argument(
        "--pard-bonds",
        choices=["aromatic", "kekulised"],
        default="kekulised",
        help="PARD's bond types: aromatic as its own type (PARD's MOSES setting) or kekulised",
    )
    parser.add_argument(
        "--pard-no-valence",
        action="store_true",
        help="PARD without the valence features (valency, free valence) of the noisy graph",
    )
    parser.add_argument("--max-atoms", type=int, default=12, help="MOSES subset: heavy atoms")
    parser.add_argument(
        "--sample-seeds",
        default="1,0",
        help="PARD sampling seeds; 1 is the validation draw, the last one is reported",
    )
    parser.add_argument("--key", default="", help="results key of the PARD part (default: part)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out")
    parser.add_argument(
        "--families",
        default="community_small,grid_small,molecule_data,molecules,pard_molecules,timing",
        help="comma-separated parts to run; results merge into --out",
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    epochs, steps = (10, 10) if args.quick else (args.epochs, args.steps)
    # GDSS's community-small network (config/community_small.yaml).
    model = {"layers": 5, "hidden": 32, "attn_dim": 32, "batch_size": 128}
    small = {"layers": 3, "hidden": 16, "attn_dim": 16, "batch_size": 128}
    wanted = args.families.split(",")
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results: dict[str, Any] = old.get("results", {})

    def save() -> dict[str, Any]:  # after every part, so a killed run keeps what it measured
        record = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "threads": 1,
            "quick": args.quick,
            "note": "2 CPU cores shared with other jobs: timings are under load",
            "paper_community_small": PAPER_COMMUNITY,
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        return record

    for fam, net in (("community_small", model), ("grid_small", small)):
        if fam in wanted:
            results[fam] = graph_family(fam, epochs, steps, 0, net)
            print(fam, results[fam]["gdss"], flush=True)
            save()
    if "molecule_data" in wanted:
        results["molecule_data"] = molecule_data(12)
        print("molecule data", results["molecule_data"], flush=True)
        save()
    count = 20 if args.quick else 100
    if "molecules" in wanted:
        results["molecules"] = molecules(max(epochs // 2, 5), steps, 0, small, 12, count)
        print("molecules", results["molecules"]["gdss"], flush=True)
        save()
    pard_epochs, pard_channels = (2, 8) if args.quick else (args.pard_epochs, args.pard_channels)
    pard_settings = {
        "steps": 5 if args.quick else args.pard_steps,
        "seed": 0,
        "max_atoms": args.max_atoms,
        "count": count,
        "channels": pard_channels,
        "aromatic": args.pard_bonds == "aromatic",
        "sample_seeds": tuple(int(v) for v in args.sample_seeds.split(",")),
        "valence_features": not args.pard_no_valence,
    }
    if "pard_molecules" in wanted:
        key = args.key or "pard_molecules"
        results[key] = pard_molecules(pard_epochs, **pard_settings)
        print("PARD molecules", results[key]["pard"], flush=True)
        save()
    if "pard_molecules_100" in wanted:  # data-size ablation: 100 molecules, same optimizer steps
        key = args.key or "pard_molecules_100"
        results[key] = pard_molecules(round(pard_epochs * 435 / 100), **pard_settings, limit=100)
        print("PARD molecules (100)", results[key]["pard"], flush=True)
        save()
    if "timing" in wanted:
        steps_timed = 5 if args.quick else 20
        results["timing_s_per_graph_step"] = timing((10, 20, 40, 80), steps_timed, model)
    print(markdown(save()))


if __name__ == "__main__":
    main()
