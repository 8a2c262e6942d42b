"""What every reproduction shares: the registry entry, the result record, the command line and
the JSON rows under ``benchmarks/results/repro.jsonl``.

A reproduction is a module ``interpolant.repro.seedNN_topic`` with a module-level
``REPRO = Repro(...)`` whose ``run(quick=False, seed=0)`` returns a :class:`ReproResult`. The
claim flag must be computed from the measured numbers by a rule stated in the module (never
typed in), so a failing claim reads "claim held: no".

Recording: ``python -m interpolant.repro.NAME`` appends one JSON row to the results file for a
full run; a ``--quick`` run records only with ``--record``; ``--no-record`` records nothing. The
report (``python -m interpolant.repro.report``) shows the latest full row per name (a quick row
only when no full row exists, marked as quick).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

#: Where rows go by default: ``benchmarks/results/repro.jsonl`` of the source checkout (or of the
#: current directory when the package is installed elsewhere).
RESULTS_NAME = Path("benchmarks") / "results" / "repro.jsonl"


@dataclass
class ReproResult:
    """What one run measured.

    ``numbers`` are the measured values by readable name (floats); ``claim_held`` is the stated
    rule applied to them; ``headline`` a one-line digest for the results table; ``summary`` one
    paragraph in words; ``settings`` everything needed to rerun it; ``rule`` the claim rule.
    """

    numbers: dict[str, float]
    claim_held: bool
    headline: str
    summary: str
    settings: dict[str, Any]
    rule: str
    wall_time_s: float = 0.0
    quick: bool = False


@dataclass(frozen=True)
class Repro:
    """One registered reproduction of a seed paper's claim."""

    name: str
    paper: int
    title: str
    claim: str
    run: Callable[..., ReproResult] = field(repr=False)

    def __call__(self, quick: bool = False, seed: int = 0) -> ReproResult:
        """Run it and stamp the wall time and the quick flag."""
        start = time.perf_counter()
        result = self.run(quick=quick, seed=seed)
        result.wall_time_s = time.perf_counter() - start
        result.quick = quick
        return result


# ----------------------------------------------------------------------------------------------
# Recording.


def mean_se(values: torch.Tensor | Sequence[float]) -> tuple[float, float]:
    """Mean of per-sample scores and its standard error (sample std / sqrt(n))."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    return float(x.mean()), float(x.std()) / math.sqrt(x.numel())


def default_results_path() -> Path:
    """``benchmarks/results/repro.jsonl`` of the source checkout this package lives in, else of
    the current directory."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "src" / "interpolant").is_dir():
        return root / RESULTS_NAME
    return Path.cwd() / RESULTS_NAME


def _git_commit(cwd: Path) -> str | None:
    """The checkout's commit (with "+dirty" when files differ), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    """Versions that can change a number: interpolant, torch, numpy, Python, git commit."""
    import numpy

    from .. import __version__

    return {
        "interpolant": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "git": _git_commit(Path(__file__).resolve().parent),
    }


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by strings so rows are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def make_row(repro: Repro, result: ReproResult, seed: int) -> dict[str, Any]:
    """The JSON row recorded for one run."""
    row = {
        "name": repro.name,
        "paper": repro.paper,
        "title": repro.title,
        "claim": repro.claim,
        "rule": result.rule,
        "numbers": result.numbers,
        "claim_held": bool(result.claim_held),
        "headline": result.headline,
        "summary": result.summary,
        "settings": {**result.settings, "seed": seed},
        "quick": bool(result.quick),
        "wall_time_s": round(result.wall_time_s, 3),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    return _json_safe(row)


def append_row(row: dict[str, Any], path: Path) -> None:
    """Append one row (one line of strict JSON) to ``path``, creating folders as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, allow_nan=False, sort_keys=False) + "\n")


def format_result(repro: Repro, result: ReproResult) -> str:
    """A readable block: the claim, the numbers as a table, the rule and the verdict."""
    width = max((len(k) for k in result.numbers), default=0)
    lines = [
        f"{repro.name}: seed paper {repro.paper}, {repro.title}",
        f"claim: {repro.claim}",
        "",
        f"{'quantity':<{width}}  value",
        f"{'-' * width}  {'-' * 10}",
    ]
    lines += [f"{k:<{width}}  {v:.4g}" for k, v in result.numbers.items()]
    lines += [
        "",
        f"rule: {result.rule}",
        result.summary,
        f"wall time: {result.wall_time_s:.1f} s{' (quick)' if result.quick else ''}",
        f"claim held: {'yes' if result.claim_held else 'no'}",
    ]
    return "\n".join(lines)


def main(repro: Repro, argv: Sequence[str] | None = None) -> ReproResult:
    """Command line of one reproduction: run it, print the table, record the row."""
    parser = argparse.ArgumentParser(
        prog=f"python -m interpolant.repro.{repro.name}",
        description=f"Reproduce seed paper {repro.paper} ({repro.title}): {repro.claim}",
    )
    parser.add_argument("--quick", action="store_true", help="small settings (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    rec = parser.add_mutually_exclusive_group()
    rec.add_argument("--record", action="store_true", help="record a quick run too")
    rec.add_argument("--no-record", action="store_true", help="record nothing")
    parser.add_argument("--results", type=Path, default=None, help="JSON-lines file to append to")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    result = repro(quick=args.quick, seed=args.seed)
    print(format_result(repro, result))
    if not args.no_record and (args.record or not args.quick):
        path = args.results or default_results_path()
        append_row(make_row(repro, result, args.seed), path)
        print(f"recorded in {path}", file=sys.stderr)
    return result


def train_config(
    run_dir: str | Path, seed: int, steps: int, batch_size: int, lr: float, **settings: Any
) -> Any:
    """A reproduction's CPU training config: cosine learning rate, EMA with a 20 kimg
    halflife, one checkpoint at the end, no logging or progress bars, a fresh run folder;
    ``settings`` (model, path, predicts, objective, ...) add to or override it."""
    from ..train import TrainConfig

    base: dict[str, Any] = dict(
        run_dir=str(run_dir),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        lr_schedule="cosine",
        ema_halflife_kimg=20.0,
        device="cpu",
        log_every=steps,
        checkpoint_every=steps,
        keep_checkpoints=1,
        resume=False,
        progress=False,
    )
    return TrainConfig(**{**base, **settings})


def settings_dict(obj: Any) -> dict[str, Any]:
    """A dataclass of settings as a plain dict."""
    return asdict(obj)
