"""GDSS on community-small, the small grid and MOSES molecules, against an Erdos-Renyi baseline
and the GDSS paper's reported MMDs; sampling time against the number of nodes.

Protocol (GraphRNN / GDSS): 80/20 split of the family's graphs, as many generated graphs as test
graphs with node counts drawn from the training graphs, MMD^2 with GDSS's kernels and sigmas
(Gaussian-EMD degree and clustering, Gaussian orbit with sigma 30) against the test split.
The ER baseline draws node counts the same way and p = the training graphs' pooled density.
GDSS paper, Table 1, community-small: degree 0.045, clustering 0.086, orbit 0.007.

Molecules: MOSES SMILES with <= 12 heavy atoms (435 training molecules; MOSES weighs 250-350
Da, so this is not QM9), atoms C N O F S Cl Br, kekulised bond orders; validity without
correction, uniqueness and novelty of as many molecules as there are test molecules.

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
from interpolant.graphs.convert import from_smiles, to_networkx, to_smiles
from interpolant.graphs.gdss import GDSS, sample
from interpolant.graphs.gdss_train import train_gdss
from interpolant.graphs.metrics import graph_mmds, molecule_metrics
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


def molecules(epochs: int, steps: int, seed: int, model: dict, max_atoms: int) -> dict[str, Any]:
    train_smiles = gdata.moses_smiles("train", max_atoms)
    test_smiles = gdata.moses_smiles("test", max_atoms)
    batch, report = from_smiles(train_smiles, atoms=gdata.MOSES_ATOMS, max_atoms=max_atoms)
    start = time.perf_counter()
    net, losses = train_gdss(batch, epochs=epochs, seed=seed, **model)
    train_s = time.perf_counter() - start
    sizes = [int(n) for n in batch.num_nodes[: len(test_smiles)]]
    out = sample(net, sizes, steps=steps, seed=seed)
    smiles = to_smiles(out.graphs(molecule=True), gdata.MOSES_ATOMS)
    return {
        "train": report.kept,
        "test": len(test_smiles),
        "max_atoms": max_atoms,
        "epochs": epochs,
        "train_s": train_s,
        "final_loss": losses[-1],
        "gdss": molecule_metrics(smiles, train_smiles),
        "examples": [s for s in smiles if s][:8],
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
    if "molecules" in res:
        m = res["molecules"]["gdss"]
        lines.append("")
        lines.append(
            f"MOSES <= {res['molecules']['max_atoms']} atoms: validity w/o correction "
            f"{m['validity']:.2f}, uniqueness {m['uniqueness']:.2f}, novelty "
            f"{m['novelty']:.2f}"
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
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out")
    parser.add_argument(
        "--families",
        default="community_small,grid_small,molecules,timing",
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
    if "molecules" in wanted:
        results["molecules"] = molecules(max(epochs // 2, 5), steps, 0, small, 12)
        print("molecules", results["molecules"]["gdss"], flush=True)
        save()
    if "timing" in wanted:
        steps_timed = 5 if args.quick else 20
        results["timing_s_per_graph_step"] = timing((10, 20, 40, 80), steps_timed, model)
    print(markdown(save()))


if __name__ == "__main__":
    main()
