"""Tables of ``train_quality.py``: solver selection, medians, ratios and the README section.

Kept apart from the runner so that ``train_quality.py --render results.json`` can redo the tables
without training anything.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

#: "rf_ot" is the RF recipe with exact minibatch OT coupling (``coupling="ot"``), as OT-CFM.
OURS = ("rf", "edm", "vp", "rf_ot")
ALL_SETS = ("moons", "swiss_roll", "8gaussians", "checkerboard", "digits")
PEERS = ("icfm", "otcfm", "ddpm")
#: Ours with uniform time instead of logit-normal: the I-CFM objective written with our library
#: (same optimum, same estimator up to t -> 1 - t), to separate implementation from recipe. It is
#: reported as a diagnostic and never counted as "ours best" (it was added after a first run).
#: "rf_uniform_ot" adds exact minibatch OT coupling to it (OT-CFM's objective in our library).
DIAGNOSTIC = ("rf_uniform", "rf_uniform_ot")
METHODS = (*OURS, *PEERS, *DIAGNOSTIC)
OUR_SIDE = (*OURS, *DIAGNOSTIC)
LABELS = {
    "rf": "ours RF",
    "rf_uniform": "ours RF, uniform t",
    "rf_ot": "ours RF + OT",
    "rf_uniform_ot": "ours RF + OT, uniform t",
    "edm": "ours EDM",
    "vp": "ours VP",
    "icfm": "torchcfm I-CFM",
    "otcfm": "torchcfm OT-CFM",
    "ddpm": "diffusers DDPM",
}

# ------------------------------------------------------------------------------- aggregation


def aggregate(
    jobs: list[dict[str, Any]], sets: tuple[str, ...], nfes: tuple[int, ...]
) -> dict[str, Any]:
    """Pick each (set, method, NFE)'s solver on validation medians; report test medians."""
    table: dict[str, Any] = {}
    for set_name in sets:
        for nfe in nfes:
            entry: dict[str, Any] = {"methods": {}, "peer_nets_with_our_solvers": {}}
            for method in (m for m in METHODS if any(j["method"] == m for j in jobs)):
                runs = [j for j in jobs if j["set"] == set_name and j["method"] == method]
                keys = [k for k in runs[0]["scores"] if k.startswith(f"{nfe}|")]
                natural = [k for k in keys if not k.split("|", 1)[1].startswith("ours:")]
                crossed = [k for k in keys if k.split("|", 1)[1].startswith("ours:")]
                entry["methods"][method] = _select(runs, natural)
                if crossed:
                    entry["peer_nets_with_our_solvers"][method] = _select(runs, crossed)
            # A saved run from before a recipe was added lacks it: rank what was run.
            ran = [m for m in OURS if m in entry["methods"]]
            ours = min(entry["methods"][m]["test_median"] for m in ran)
            peers = min(entry["methods"][m]["test_median"] for m in PEERS)
            entry["ours_best"] = min(ran, key=lambda m: entry["methods"][m]["test_median"])
            entry["peer_best"] = min(PEERS, key=lambda m: entry["methods"][m]["test_median"])
            entry["ratio_ours_best_over_peer_best"] = ours / peers
            entry["paired"] = paired(
                entry["methods"][entry["ours_best"]]["test_per_seed"],
                entry["methods"][entry["peer_best"]]["test_per_seed"],
            )
            table[f"{set_name}|nfe{nfe}"] = entry
    return table


def paired(ours: list[float], peer: list[float]) -> dict[str, float]:
    """Per-seed comparison of two recipes' test metrics (same seeds, same order): the seeds
    where ours is lower, and the geometric mean of ours / peer with the standard error of its
    log (sample std / sqrt(n))."""
    logs = [math.log(o / p) for o, p in zip(ours, peer, strict=True)]
    se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
    return {
        "ours_lower": sum(o < p for o, p in zip(ours, peer, strict=True)),
        "seeds": len(logs),
        "geomean_ratio": math.exp(statistics.fmean(logs)),
        "log_ratio_se": se,
    }


def _select(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    val = {k: statistics.median(r["scores"][k]["val"] for r in runs) for k in keys}
    best = min(keys, key=lambda k: val[k])
    test = [r["scores"][best]["test"] for r in sorted(runs, key=lambda r: r["seed"])]
    return {
        "solver": best.split("|", 1)[1],
        "val_median": val[best],
        "test_per_seed": test,
        "test_median": statistics.median(test),
        "all_solvers_test_median": {
            k.split("|", 1)[1]: statistics.median(r["scores"][k]["test"] for r in runs)
            for k in keys
        },
    }


def metric_name(set_name: str) -> str:
    return "FD (digits features)" if set_name == "digits" else "sliced W2"


def markdown(result: dict[str, Any]) -> str:
    """The README table: medians over seeds of the test metric, each with its chosen solver."""
    s = result["settings"]
    # Columns of the recipes that were run (a saved run may predate one).
    first = next(iter(result["table"].values()))["methods"]
    cols = tuple(m for m in (*OURS, *PEERS) if m in first)
    head = "| set | NFE | metric | " + " | ".join(LABELS[m] for m in cols)
    head += " | floor | ours/peer best |"
    lines = [head, "|" + "---|" * (len(cols) + 5)]
    for key, e in result["table"].items():
        set_name, nfe = key.split("|nfe")
        cells = []
        for m in cols:
            v = e["methods"][m]
            mark = "**" if m in (e["ours_best"], e["peer_best"]) else ""
            cells.append(f"{mark}{v['test_median']:.4g}{mark}")
        floor = result["floors"][set_name]
        lines.append(
            f"| {set_name} | {nfe} | {metric_name(set_name)} | "
            + " | ".join(cells)
            + f" | {floor:.3g} | {e['ratio_ours_best_over_peer_best']:.3f} |"
        )
    ratios = {k: e["ratio_ours_best_over_peer_best"] for k, e in result["table"].items()}
    worse = [k.replace("|nfe", " NFE ") for k, r in ratios.items() if r > 1.0]
    met = not worse and any(r < 1.0 for r in ratios.values())
    lines.append("")
    lines.append(
        "Ratio = median of our best recipe / median of the best peer (below 1: ours better). "
        "Target (no worse than the best peer on every set, better on at least one): "
        + (
            "met."
            if met
            else "**not met**" + (f" (worse on {', '.join(worse)})." if worse else ".")
        )
    )
    pairs = [
        f"{k.replace('|nfe', ' NFE ')}: lower on {e['paired']['ours_lower']} of "
        f"{e['paired']['seeds']} seeds, geometric-mean ratio {e['paired']['geomean_ratio']:.3f} "
        f"(log SE {e['paired']['log_ratio_se']:.3f})"
        for k, e in result["table"].items()
        if "paired" in e
    ]
    if pairs:
        lines.append("")
        lines.append("Paired by seed, our best recipe against the best peer: " + "; ".join(pairs))
    lines.append("")
    lines.append("Solver chosen on validation data (per set, NFE and method):")
    lines.append("")
    lines.append("| set | NFE | " + " | ".join(LABELS[m] for m in cols) + " |")
    lines.append("|" + "---|" * (len(cols) + 2))
    for key, e in result["table"].items():
        set_name, nfe = key.split("|nfe")
        solvers = " | ".join(e["methods"][m]["solver"] for m in cols)
        lines.append(f"| {set_name} | {nfe} | {solvers} |")
    lines.append("")
    lines.append(
        "Diagnostics (not in the ratio): our RF objective with uniform t instead of logit-normal "
        "(the I-CFM objective in our library; with OT coupling, OT-CFM's), and the peers' "
        "trained networks sampled with our solvers (chosen the same way); solver in brackets."
    )
    lines.append("")
    diagnostic = [m for m in DIAGNOSTIC if m in first]
    names = [LABELS[m] for m in diagnostic] + [LABELS[m] + " + our solver" for m in PEERS]
    lines.append("| set | NFE | " + " | ".join(names) + " |")
    lines.append("|" + "---|" * (len(names) + 2))
    for key, e in result["table"].items():
        set_name, nfe = key.split("|nfe")
        picks = [e["methods"][m] for m in diagnostic]
        picks += [e["peer_nets_with_our_solvers"][m] for m in PEERS]
        cells = [f"{v['test_median']:.4g} ({v['solver'].removeprefix('ours:')})" for v in picks]
        lines.append(f"| {set_name} | {nfe} | " + " | ".join(cells) + " |")
    lines.append("")
    steps = f"{s['toy_steps']} steps (2-D, batch {s['toy_batch']}, MLP width {s['toy_width']})"
    steps += f", {s['digits_steps']} steps (digits, batch {s['digits_batch']}, MLP width "
    steps += f"{s['digits_width']}), depth {s['depth']}"
    lines.append(
        f"Medians over seeds {list(s['seeds'])}; lower is better; bold: best of ours and best "
        f"peer. {steps}; AdamW lr {s['lr']}, EMA, same initial weights. Parameters per model: "
        + ", ".join(f"{k} {v}" for k, v in result["params"].items())
        + "."
    )
    skipped = [n for n in ALL_SETS if n not in s["sets"]]
    if skipped:  # a run restricted with --sets (e.g. for time): say what it does not cover
        lines.append(f"This run covers {', '.join(s['sets'])} only (not {', '.join(skipped)}).")
    load = result["machine"].get("loadavg_1_5_15_at_start")
    lines.append(
        f"This run: {result['wall_s'] / 60:.0f} min wall on {result['machine']['cpus']} CPUs "
        f"({s['workers']} workers, one thread each"
        + (f"; 1-min load average {load[0]:.1f} at the start)." if load else ").")
    )
    return "\n".join(lines)


README_START = "<!-- train_quality:start -->"
README_END = "<!-- train_quality:end -->"


def update_readme(path: Path, table: str, command: str) -> None:
    """Replace the generated section (or append it at the end, below other sections)."""
    body = (
        f"{README_START}\n## Training quality\n\nGenerated by `{command}` (see the docstring of "
        "`benchmarks/train_quality.py` for the protocol; JSON in "
        f"`benchmarks/results/train_quality.json`).\n\n{table}\n{README_END}\n"
    )
    text = path.read_text() if path.exists() else ""
    if README_START in text and README_END in text:
        before, rest = text.split(README_START, 1)
        after = rest.split(README_END, 1)[1].lstrip("\n")
        text = before + body + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text)
