"""Masked-diffusion text samplers on an exact oracle: quality, diversity and time against steps.

The problem. A first-order Markov chain (V = 16 tokens, Dirichlet(0.3) transition rows, L = 32)
whose exact masked denoiser is forward-backward (``interpolant.text.markov``). Every sampler
drives that same denoiser, so differences are the sampler's. Metrics per sampler and step
budget: per-token NLL of the samples under the true chain (its expectation for exact samples
is the exact entropy per token, printed as the reference), unigram entropy (diversity),
bigram total variation to exact samples (with the exact-vs-exact floor), batched model calls,
model evaluations per sample (what caching saves) and wall time (one thread).

Samplers: ours (``interpolant.text.sample_text`` with the methods of ``interpolant.text.samplers``;
one spec per row, ``TextSampler``) ancestral (float64, with and without caching),
first-hitting (one call per token), LLaDA confidence decoding with low-confidence remasking
(temperature 1; full and semi-AR blocks of 8); the autoregressive baseline (the exact chain
sampled left to right: L steps, what a perfect AR model gives); and the peer
``flow_matching.solver.MixtureDiscreteEulerSolver`` on a ``MixtureDiscreteProbPath`` with a
``PolynomialConvexScheduler(n=1)`` (kappa = t: the masked path with linear alpha in flow
matching's time, t_fm = 1 - t), masked source (all tokens = the mask id V, vocabulary V + 1),
fed the same posterior with zero mass on the mask, in float64 and in its default float32
categorical precision.

With ``--run DIR`` (a run of ``text.train_text("markov-char", ...)``) the run's chain replaces
the default one and its trained denoiser adds "trained" rows (first-hitting, ancestral with and
without cache, confidence remasking); ``--ar-run DIR`` (the same preset with ``loss="ar"``) adds
the trained autoregressive baseline and EDLM-AR with the trained AR model as energy.

``--training SECONDS`` (issue 21) instead trains the masked-diffusion preset and the
autoregressive model (``loss=ar``, same network size) for the same training wall time on a
first-order chain (``markov-char``), a second-order chain (``data.order=2``, V = 12) and the
standard-library docstrings (``corpus-char`` at length 32, a smaller network), and reports the
held-out masked bound against the AR NLL (target: ratio <= 1.15; the two runs alternate in
``--chunks`` slices of the budget, so load from other processes falls on both alike) and the
true NLL of first-hitting samples against the exact entropy (target: <= 1.1x); curves in
``benchmarks/results/text_training.png``, numbers in ``text_training.json``.

Run: ``.venv/bin/python benchmarks/text.py [--quick] [--run DIR --ar-run DIR]``;
``--markdown`` prints the README table from the saved JSON (benchmarks/results/text.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

import interpolant as ip
from interpolant.randomness import derive_seed
from interpolant.text.autoregressive import sample_autoregressive
from interpolant.text.loop import TextSample, TextSampler, masked_canvas, sample_text
from interpolant.text.markov import MarkovLanguage
from interpolant.text.metrics import ngram_tv, token_entropy, true_nll
from interpolant.text.samplers import Confidence

RESULTS = Path(__file__).resolve().parent / "results" / "text.json"
STEPS = (8, 32, 128, 512)
QUICK_STEPS = (8, 32)
REMASKING = Confidence(temperature=1.0)  # LLaDA low-confidence remasking at temperature 1


@dataclass
class Drawn:
    """What a sampler outside ``sample_text`` returns: tokens, batched calls, calls per sample
    and wall time (the fields of ``TextSample`` the table reads)."""

    tokens: torch.Tensor
    nfe: int
    row_evals: torch.Tensor
    wall_s: float


def ours(denoiser: Any, canvas: torch.Tensor, vocab: int, seed: int, **spec: Any) -> TextSample:
    """``sample_text`` of the all-mask ``canvas`` with the spec of the keywords ``spec``."""
    return sample_text(denoiser, canvas, TextSampler(**spec, seed=seed), vocab_size=vocab)


class CountingDenoiser:
    """The oracle, counting batched calls."""

    def __init__(self, lang: MarkovLanguage) -> None:
        self.lang, self.calls = lang, 0

    def __call__(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lang(tokens, t)


def flow_matching_euler(
    lang: MarkovLanguage, n: int, steps: int, dtype: torch.dtype, seed: int
) -> Drawn:
    """flow_matching's mixture-path Euler solver from the all-mask source, driven by the exact
    posterior (probabilities over V + 1 classes, the mask class at 0)."""
    from flow_matching.path import MixtureDiscreteProbPath
    from flow_matching.path.scheduler import PolynomialConvexScheduler
    from flow_matching.solver import MixtureDiscreteEulerSolver
    from flow_matching.utils import ModelWrapper

    vocab = lang.vocab_size
    counter = CountingDenoiser(lang)

    class Posterior(ModelWrapper):
        def __init__(self) -> None:
            super().__init__(torch.nn.Identity())

        def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: Any) -> torch.Tensor:
            probs = torch.softmax(counter(x, t).to(torch.float64), -1)
            return torch.cat([probs, torch.zeros_like(probs[..., :1])], -1)

    path = MixtureDiscreteProbPath(scheduler=PolynomialConvexScheduler(n=1.0))
    solver = MixtureDiscreteEulerSolver(model=Posterior(), path=path, vocabulary_size=vocab + 1)
    x_init = masked_canvas(n, lang.length, vocab)
    torch.manual_seed(seed)
    start = time.perf_counter()
    # Stop just short of t = 1 (kappa'/(1 - kappa) blows up there); the last step then
    # unmasks everything with probability 1 - exp(-h / (1 - t)) ~ 1.
    grid = torch.linspace(0.0, 1.0 - 1e-6, steps + 1, dtype=torch.float64)
    x = solver.sample(x_init, step_size=None, time_grid=grid, dtype_categorical=dtype)
    wall = time.perf_counter() - start
    return Drawn(x, counter.calls, torch.full((n,), counter.calls), wall)


def autoregressive(lang: MarkovLanguage, n: int, seed: int) -> Drawn:
    """The exact chain sampled left to right (a perfect AR model: L steps)."""
    start = time.perf_counter()
    x = lang.sample(n, torch.Generator().manual_seed(seed))
    return Drawn(x, lang.length, torch.full((n,), lang.length), time.perf_counter() - start)


def trained_rows(
    run_dir: Path, ar_dir: Path | None, n: int, steps: tuple[int, ...], seed: int, add: Any
) -> None:
    """Rows for a trained masked-diffusion run (and an AR run on the same data)."""
    from interpolant.text import EDLM, AREnergy, load_text_run

    run = load_text_run(run_dir)
    model, vocab, length = run.model, run.tokenizer.vocab_size, run.language.length
    denoiser = torch.no_grad()(lambda x, t: model(x, t))
    canvas = masked_canvas(n, length, vocab)
    add(
        "trained: first-hitting",
        length,
        ours(denoiser, canvas, vocab, seed, method="first_hitting"),
    )
    for t in steps:
        add(
            "trained: ancestral",
            t,
            ours(denoiser, canvas, vocab, seed, method="ancestral", steps=t),
        )
        add(
            "trained: ancestral + cache",
            t,
            ours(denoiser, canvas, vocab, seed, method="ancestral", steps=t, cache=True),
        )
        add(
            "trained: confidence remasking (T=1)",
            t,
            ours(denoiser, canvas, vocab, seed, method=REMASKING, steps=t),
        )
    if ar_dir is None:
        return
    ar = load_text_run(ar_dir).model
    add("trained: autoregressive", length, sample_autoregressive(ar, n, length, seed=seed))
    energy = AREnergy(torch.no_grad()(lambda x: cast(Any, ar).log_prob(x)))
    for t in steps:
        out = ours(denoiser, canvas, vocab, seed, method=EDLM(energy, n_proposals=4), steps=t)
        add("trained: EDLM-AR (K=4)", t, out)


def evaluate(
    n: int,
    steps: tuple[int, ...],
    seed: int,
    log: Callable[[str], None],
    run_dir: Path | None = None,
    ar_dir: Path | None = None,
) -> dict:
    if run_dir is None:
        lang = MarkovLanguage.random(16, 32, concentration=0.3, seed=seed)
    else:
        from interpolant.text import load_text_run

        lang = load_text_run(run_dir).language
        if not isinstance(lang, MarkovLanguage):
            raise ValueError(f"--run must be a Markov-chain run (preset markov-char), got {lang}")
    vocab = lang.vocab_size
    reference = lang.sample(n, torch.Generator().manual_seed(derive_seed("reference", seed)))
    rows: list[dict[str, Any]] = []

    def add(name: str, nominal_steps: int, out: TextSample | Drawn) -> None:
        bad = int((out.tokens >= vocab).sum())
        if bad:
            raise RuntimeError(f"{name} left {bad} masked tokens")
        rows.append(
            {
                "sampler": name,
                "steps": nominal_steps,
                "model_calls": int(out.nfe),
                "row_evals_mean": float(out.row_evals.to(torch.float64).mean()),
                "true_nll_per_token": true_nll(out.tokens, lang.log_prob),
                "unigram_entropy": token_entropy(out.tokens, vocab),
                "bigram_tv": ngram_tv(out.tokens, reference, 2),
                "wall_s": out.wall_s,
            }
        )
        log(f"{name:<34} steps {nominal_steps:>4}  NLL {rows[-1]['true_nll_per_token']:.3f}  "
            f"calls {out.nfe:>4}  {out.wall_s:.2f}s")  # fmt: skip

    canvas = masked_canvas(n, lang.length, vocab)
    add("autoregressive (exact chain)", lang.length, autoregressive(lang, n, seed))
    add("first-hitting", lang.length, ours(lang, canvas, vocab, seed, method="first_hitting"))
    for t in steps:
        add("ancestral", t, ours(lang, canvas, vocab, seed, method="ancestral", steps=t))
        add(
            "ancestral + cache",
            t,
            ours(lang, canvas, vocab, seed, method="ancestral", steps=t, cache=True),
        )
        add(
            "confidence remasking (T=1)",
            t,
            ours(lang, canvas, vocab, seed, method=REMASKING, steps=t),
        )
        if t >= 4:
            semi = Confidence(temperature=1.0, block_length=8)
            add(
                "semi-AR blocks of 8 (T=1)",
                t,
                ours(lang, canvas, vocab, seed, method=semi, steps=t),
            )
        for dtype in (torch.float64, torch.float32):
            name = f"flow_matching Euler ({str(dtype).removeprefix('torch.')})"
            add(name, t, flow_matching_euler(lang, n, t, dtype, seed))
    if run_dir is not None:
        trained_rows(run_dir, ar_dir, n, steps, seed, add)
    floor = ngram_tv(
        lang.sample(n, torch.Generator().manual_seed(derive_seed("exact", seed))), reference, 2
    )
    return {
        "language": repr(lang),
        "trained_run": None if run_dir is None else str(run_dir),
        "ar_run": None if ar_dir is None else str(ar_dir),
        "exact_entropy_per_token": lang.sequence_entropy() / lang.length,
        "bigram_tv_floor": floor,
        "rows": rows,
    }


def markdown(record: dict[str, Any]) -> str:
    """The README table: every sampler and step budget."""
    res = record["results"]
    lines = [
        f"Exact entropy per token {res['exact_entropy_per_token']:.3f}; bigram TV floor "
        f"{res['bigram_tv_floor']:.3f} ({record['settings']['samples']} samples).",
        "",
        "| sampler | steps | batched calls | calls per sample | true NLL/token | unigram entropy "
        "| bigram TV | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['model_calls']} | {r['row_evals_mean']:.1f} | "
            f"{r['true_nll_per_token']:.3f} | {r['unigram_entropy']:.3f} | {r['bigram_tv']:.3f} "
            f"| {r['wall_s']:.2f} |"
        )
    return "\n".join(lines)


TRAINING_RESULTS = RESULTS.with_name("text_training.json")
#: name -> (preset, overrides): two chains with exact entropies and a natural corpus.
TRAINING_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "markov order 1 (V=8, L=32)": ("markov-char", {}),
    "markov order 2 (V=12, L=32)": ("markov-char", {"data.order": 2, "data.vocab_size": 12}),
    "stdlib docstrings (chars, L=32)": (
        "corpus-char",
        {"data.length": 32, "model.dim": 64, "model.depth": 2, "batch_size": 64, "lr": 2e-3},
    ),
}


def training(
    budget_s: float, root: Path, log: Callable[[str], None], chunks: int = 4, seed: int = 0
) -> dict[str, Any]:
    """Mask vs AR at equal training wall time on every task (see the module docstring).

    The two runs of a task alternate in ``chunks`` slices of the budget (each resumes its own
    checkpoint up to j * budget / chunks seconds of training time, the slice's first run
    alternating), so load from other processes falls on both alike; each slice ends with the
    held-out bound (``eval.json``), the points of the held-out curves. ``seed`` is the
    evaluation seed (chain, data, initialisation); settings were chosen on seeds 1 and 2."""
    from interpolant.text import load_text_run
    from interpolant.text.train import train_text

    out: dict[str, Any] = {}
    for number, (task, (preset, overrides)) in enumerate(TRAINING_TASKS.items()):
        rows: dict[str, Any] = {loss: {"held_out_curve": []} for loss in ("mask", "ar")}
        for chunk in range(1, chunks + 1):
            order = ("mask", "ar") if chunk % 2 else ("ar", "mask")
            for loss in order:
                run_dir = root / f"{preset}-{number}-{loss}"
                spec = {**overrides, "loss": loss, "steps": 10**6, "seed": seed,
                        "time_limit_s": budget_s * chunk / chunks, "progress": False,
                        "log_every": 25, "checkpoint_every": 10**6}  # fmt: skip
                run = train_text(preset, spec, run_dir, eval_n_t=8)
                ev = json.loads((run_dir / "eval.json").read_text())
                elapsed = training_time(run_dir)
                point = (elapsed, run.step, ev["nll_bound_per_token"])
                rows[loss]["held_out_curve"].append(point)
                rows[loss].update(
                    steps=run.step,
                    held_out_nll=ev["nll_bound_per_token"],
                    stderr=ev["nll_bound_stderr"],
                    entropy_per_token=ev.get("entropy_per_token"),
                )
                log(f"{task} {loss}: {run.step} steps, {elapsed:.0f} s, "
                    f"held-out {ev['nll_bound_per_token']:.3f}")  # fmt: skip
        for loss in ("mask", "ar"):
            log_file = root / f"{preset}-{number}-{loss}" / "stats.jsonl"  # none if < log_every
            lines = log_file.read_text().splitlines() if log_file.is_file() else []
            rows[loss]["curve"] = [(r["time_s"], r["loss"]) for r in map(json.loads, lines)]
        result: dict[str, Any] = {"preset": preset, "overrides": overrides, **rows}
        result["ratio_mask_over_ar"] = rows["mask"]["held_out_nll"] / rows["ar"]["held_out_nll"]
        entropy = rows["mask"]["entropy_per_token"]
        if entropy is not None:
            model = load_text_run(root / f"{preset}-{number}-mask")
            canvas = masked_canvas(200, model.language.length, model.tokenizer.vocab_size)
            drawn = ours(model.model, canvas, model.tokenizer.vocab_size, seed,
                         method="first_hitting")  # fmt: skip
            result["fhs_true_nll"] = true_nll(drawn.tokens, model.language.log_prob)
            result["fhs_over_entropy"] = result["fhs_true_nll"] / entropy
        out[task] = result
    return out


def training_time(run_dir: Path) -> float:
    """Training wall time (all sessions) recorded in the run's newest checkpoint."""
    from interpolant.train import checkpoint as ckpt

    found = ckpt.find_resume(run_dir / "checkpoints", log=lambda message: None)
    if found is None:
        raise RuntimeError(f"no checkpoint in {run_dir}")
    return float(json.loads((found / ckpt.STATE_FILE).read_text())["elapsed_s"])


def plot_training(results: dict[str, Any], path: Path) -> None:
    """Per task: training loss (thin) and held-out bound / NLL (markers) against training wall
    time, masked diffusion and AR in one panel, the exact entropy dotted where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8))
    for ax, (task, res) in zip(axes, results.items(), strict=True):
        for loss, label, color in (
            ("mask", "masked diffusion (NELBO)", "C0"),
            ("ar", "autoregressive", "C1"),
        ):
            if res[loss]["curve"]:
                t, y = zip(*res[loss]["curve"], strict=True)
                ax.plot(t, y, color=color, lw=0.8, alpha=0.5, label=f"{label}: train loss")
            t, _, held = zip(*res[loss]["held_out_curve"], strict=True)
            ax.plot(t, held, "o-", color=color, label=f"{label}: held-out {held[-1]:.3f}")
        if res["mask"]["entropy_per_token"] is not None:
            ax.axhline(res["mask"]["entropy_per_token"], color="k", ls=":", label="exact entropy")
        ax.set(title=task, xlabel="training wall time (s)", ylabel="nats/token")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 samples, steps 8 and 32")
    parser.add_argument("--samples", type=int, default=None, help="samples (default 400)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out")
    parser.add_argument("--run", type=Path, default=None,
                        help="a trained masked-diffusion run of preset markov-char (its language "
                        "replaces the default chain; its model adds 'trained' rows)")  # fmt: skip
    parser.add_argument("--ar-run", type=Path, default=None,
                        help="an AR run on the same preset (AR baseline, EDLM energy)")  # fmt: skip
    parser.add_argument("--training", type=float, default=None, metavar="SECONDS",
                        help="mask vs AR at equal training time per task (issue 21)")  # fmt: skip
    parser.add_argument("--chunks", type=int, default=4,
                        help="--training: alternate the two runs in this many slices")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None,
                        help="--training: keep the trained runs in this folder (default: a "
                        "temporary one), e.g. for --run / --ar-run")  # fmt: skip
    args = parser.parse_args(argv)
    if args.training is not None:
        return training_main(args.training, args.chunks, args.keep)
    if args.markdown:
        saved = json.loads(args.out.read_text())
        print(markdown(saved))
        return saved
    torch.set_num_threads(1)
    n = args.samples or (100 if args.quick else 400)
    steps = QUICK_STEPS if args.quick else STEPS
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    results = evaluate(n, steps, 0, log, args.run, args.ar_run)
    import flow_matching

    record = {
        "benchmark": "text",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"samples": n, "steps": list(steps), "quick": args.quick, "seed": 0},
        "versions": {
            "interpolant": ip.__version__,
            "torch": torch.__version__,
            "flow_matching": getattr(flow_matching, "__version__", "unknown"),
        },
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "seconds": time.perf_counter() - start,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(markdown(record))
    log(f"saved {args.out}")
    return record


def training_main(budget_s: float, chunks: int = 4, keep: Path | None = None) -> dict[str, Any]:
    """``--training``: run, save JSON and the PNG, print the summary (``keep``: the folder
    the runs stay in; default a temporary one)."""
    import contextlib
    import tempfile

    torch.set_num_threads(1)
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise SystemExit(f"--keep {keep} is not empty (runs there would be resumed)")
    folder = contextlib.nullcontext(str(keep)) if keep else tempfile.TemporaryDirectory()
    with folder as root:
        results = training(budget_s, Path(root), log, chunks)
    record = {
        "benchmark": "text-training",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "budget_s_per_run": budget_s,
            "chunks": chunks,
            "threads": 1,
            "seed": 0,
            "note": "shared 2-core CPU loaded by other processes; runs alternate in chunks",
        },
        "versions": {"interpolant": ip.__version__, "torch": torch.__version__},
        "seconds": time.perf_counter() - start,
        "results": results,
    }
    TRAINING_RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    plot_training(results, TRAINING_RESULTS.with_suffix(".png"))
    for task, res in results.items():
        fhs = (
            f", FHS true NLL / entropy {res['fhs_over_entropy']:.3f}"
            if "fhs_true_nll" in res
            else ""
        )
        log(f"{task}: mask {res['mask']['held_out_nll']:.3f} ({res['mask']['steps']} steps) vs "
            f"AR {res['ar']['held_out_nll']:.3f} ({res['ar']['steps']} steps): ratio "
            f"{res['ratio_mask_over_ar']:.3f}{fhs}")  # fmt: skip
    return record


if __name__ == "__main__":
    main()
