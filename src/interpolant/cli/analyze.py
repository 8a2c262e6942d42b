"""``interpolant analyze RUN --what ...``: the theory papers' analysis tools on a trained run.

* ``hallucination`` (seed 11): sample with the run's sampler, record x0_hat at every step (no
  extra model evaluations) and score each sample by the variance of its last K predictions;
  writes the scores' quantiles and a histogram.
* ``intrinsic-dim`` (seed 10): the normal-bundle estimate at training points at ``--time``.
* ``fp-residual`` (seed 5): the score-form Fokker-Planck residual's mean square at noised
  training points, per time (Hutchinson's divergence above 16 dimensions).
* ``jacobian-rank`` (seed 25): the numerical rank of the denoiser's Jacobian per noise level.

Each writes ``RUN/analysis/<what>.json`` and a plot beside it (or under ``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

WHATS = ("hallucination", "intrinsic-dim", "fp-residual", "jacobian-rank")


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``analyze`` subcommand to ``sub``."""
    p = sub.add_parser(
        "analyze",
        help="theory diagnostics of a run: hallucination, intrinsic-dim, fp-residual, ...",
        formatter_class=formatter,
        description=__doc__.replace("``", "") if __doc__ else None,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--what", choices=WHATS, required=True, help="which analysis")
    p.add_argument("--n", type=int, default=256, help="samples or data points analysed")
    p.add_argument("--last-k", type=int, default=10, help="hallucination: steps in the variance")
    p.add_argument("--time", type=float, default=0.02, help="intrinsic-dim: the time t")
    p.add_argument(
        "--times",
        type=float,
        nargs="*",
        default=[0.05, 0.2, 0.5, 0.8],
        help="fp-residual / jacobian-rank: the times",
    )
    p.add_argument("--probes", type=int, default=4, help="fp-residual: Hutchinson probes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="folder for the JSON and the plot")


def _flat_model(model: Any, shape: tuple[int, ...]) -> Any:
    """The run's model as functions of flat (B, D) rows."""

    def pred(x: torch.Tensor, t: torch.Tensor) -> Any:
        return model(x.reshape(x.shape[0], *shape), t)

    return pred


def hallucination(run: Any, data: torch.Tensor, args: argparse.Namespace) -> tuple[dict, Any]:
    from ..analysis import TrajectoryRecorder, hallucination_score
    from ..api.plugins import sampler_of
    from ..api.runs import start_noise
    from ..solvers import sample

    shape = tuple(data.shape[1:])
    spec = sampler_of(run.config.sample)
    noise = start_noise(shape, args.seed, range(args.n)).to(next(run.model.parameters()).device)
    hook = TrajectoryRecorder()
    with torch.no_grad():
        result = sample(run.model, noise, spec, hooks=[hook])
    scores = hallucination_score(result.state(hook), args.last_k).cpu()
    q = torch.tensor([0.5, 0.9, 0.96, 0.99], dtype=torch.float64)
    record = {
        "last_k": args.last_k,
        "nfe": result.nfe,
        "sampler": spec.config(),
        "score_quantiles": dict(zip(["50%", "90%", "96%", "99%"], scores.quantile(q).tolist())),
        "scores": scores.tolist(),
    }

    def draw(ax: Any) -> None:
        ax.hist(scores.clamp_min(1e-12).log10().numpy(), bins=50)
        ax.set(xlabel="log10 hallucination score (Var of x0_hat, last K steps)", ylabel="count")

    return record, draw


def intrinsic_dim(run: Any, data: torch.Tensor, args: argparse.Namespace) -> tuple[dict, Any]:
    from ..analysis import normal_bundle_dim

    shape = tuple(data.shape[1:])
    pred = _flat_model(run.model, shape)
    anchors = data[: args.n].reshape(min(args.n, len(data)), -1)
    with torch.no_grad():
        est = normal_bundle_dim(
            lambda x, t: pred(x, t).score.reshape(x.shape),
            anchors,
            args.time,
            run.model.path,
            n_perturb=max(64, anchors.shape[1] + 1),
            seed=args.seed,
        )
    counts = torch.bincount(est.dims, minlength=anchors.shape[1] + 1)
    record = {
        "t": args.time,
        "dims": est.dims.tolist(),
        "median": float(est.dims.double().median()),
        "histogram": counts.tolist(),
    }

    def draw(ax: Any) -> None:
        ax.semilogy(
            range(1, est.singular_values.shape[1] + 1), est.singular_values.mean(0).numpy(), "o-"
        )
        ax.set(
            xlabel="index",
            ylabel="mean singular value of the score matrix",
            title=f"normal bundle at t = {args.time:g}: median ID {record['median']:g}",
        )

    return record, draw


def _noised(run: Any, data: torch.Tensor, t: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x0 = data.reshape(len(data), -1).double()
    g = torch.Generator().manual_seed(seed)
    tt = torch.full((len(x0),), t, dtype=torch.float64)
    return run.model.path.sample_xt(
        x0, tt, torch.randn(x0.shape, generator=g, dtype=torch.float64)
    ), tt


def fp_residual(run: Any, data: torch.Tensor, args: argparse.Namespace) -> tuple[dict, Any]:
    from ..analysis import score_residual

    shape = tuple(data.shape[1:])
    model = run.model.double()
    pred = _flat_model(model, shape)
    exact = data[0].numel() <= 16
    values = []
    for t in args.times:
        x, tt = _noised(run, data[: args.n], t, args.seed)
        r = score_residual(
            lambda y, s: pred(y, s).score.reshape(y.shape),
            x,
            tt,
            model.path,
            exact=exact,
            n_probes=args.probes,
            seed=args.seed,
        )
        values.append(float(r.detach().square().mean()))
    record = {"times": args.times, "mean_square_residual": values, "exact_divergence": exact}

    def draw(ax: Any) -> None:
        ax.semilogy(args.times, values, "o-")
        ax.set(xlabel="t", ylabel="mean |FP residual|^2 (score form)")

    return record, draw


def jacobian_rank_of(run: Any, data: torch.Tensor, args: argparse.Namespace) -> tuple[dict, Any]:
    from ..analysis import jacobian_rank

    shape = tuple(data.shape[1:])
    model = run.model.double()
    pred = _flat_model(model, shape)
    ranks = []
    for t in args.times:
        x, _ = _noised(run, data[: min(args.n, 32)], t, args.seed)
        rank, _ = jacobian_rank(lambda y, s: pred(y, s).x0.reshape(y.shape), x, t, model.path)
        ranks.append(float(rank.double().mean()))
    record = {"times": args.times, "mean_rank": ranks, "dimension": int(data[0].numel())}

    def draw(ax: Any) -> None:
        ax.plot(args.times, ranks, "o-")
        ax.set(
            xlabel="t",
            ylabel="numerical rank of d x0_hat / d x_t",
            title=f"ambient dimension {record['dimension']}",
        )

    return record, draw


ANALYSES = {
    "hallucination": hallucination,
    "intrinsic-dim": intrinsic_dim,
    "fp-residual": fp_residual,
    "jacobian-rank": jacobian_rank_of,
}


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..api.runs import _classes_of, load_data, load_run
    from ..data.streaming import in_memory
    from ..plots import _pyplot, _save

    if args.n < 2:
        raise UserError(f"--n must be >= 2, got {args.n}")
    run = load_run(args.run_dir, device=args.device)
    if _classes_of(run.config.train):
        raise UserError(f"{args.run_dir} is class-conditional; analyze needs an unconditional run")
    if not run.config.data.name:
        raise UserError(f"{args.run_dir} has no data section (trained outside the CLI)")
    data = in_memory(load_data(run.config.data, "train", args.n).x)
    record, draw = ANALYSES[args.what](run, data, args)
    record = {
        "what": args.what,
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.checkpoint),
        "seed": args.seed,
        **record,
    }
    out = args.out or run.run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.what}.json").write_text(json.dumps(record, indent=1) + "\n")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    draw(ax)
    _save(fig, out / f"{args.what}.png")
    summary = {k: v for k, v in record.items() if k not in ("scores", "dims", "sampler")}
    print(json.dumps(summary))
    print(f"wrote {out / (args.what + '.json')} and {out / (args.what + '.png')}")
    return 0
