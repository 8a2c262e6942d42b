"""The ``interpolant`` command: train, sample, eval, demo, info, repro.

Every subcommand calls the function of the same name in :mod:`interpolant.api`, so a notebook
can do exactly what the command does. Bad input (unknown names, missing run folders, shapes that
do not fit) prints ``interpolant: error: ...`` and exits with status 2; ``--traceback`` shows the
full Python traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from .exits import broken_pipe, interrupted
from .sample import cmd_eval, cmd_sample

EXIT_USAGE = 2
#: Exit status of an internal error (a bug), distinct from a usage error.
EXIT_BUG = 3

DESCRIPTION = """\
interpolant: diffusion, flow and stochastic-interpolant models on one core.

  interpolant demo --out demo_out                      rectified flow on 8x8 digits (minutes, CPU)
  interpolant train --preset toy2d-flow train.steps=500
  interpolant sample runs/toy2d-flow --solver heun --nfe 20
  interpolant eval runs/toy2d-flow/samples
  interpolant inverse digits-mixture --operator sr:2   an inverse problem (exact prior)
  interpolant schedule runs/toy2d-flow --steps 4       search a 4-step time grid (AutoDiffusion)
  interpolant distill RUN --method reflow --steps 1    a few-step student of a trained run
  interpolant analyze RUN --what hallucination         theory tools on a trained run
  interpolant graphs train community                   graph generation (GDSS)
  interpolant forecast RUN --history h.csv --horizon 24   time-series forecasts (TSDiff)
  interpolant info                                     versions, devices, registries
  interpolant info --samplers                          peers' sampler names and ours
  interpolant repro --list                             the reproductions of the seed papers
  interpolant train text --preset markov-char          masked diffusion for text
  interpolant sample text runs/text-markov-char        first-hitting sampling
  interpolant sample json RUN --schema schema.json     S3: fill a JSON schema's values

Run `interpolant COMMAND --help` for each command's options; `interpolant train --help` lists
every config key."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _presets_text() -> str:
    from ..api.presets import preset_descriptions

    lines = ["presets (--preset NAME; see docs/howto/presets.md):"]
    for name, text in preset_descriptions().items():
        lines.append(
            textwrap.fill(text, 96, initial_indent=f"  {name:<13}", subsequent_indent=" " * 15)
        )
    return "\n".join(lines)


def _config_epilog(sections: tuple[str, ...]) -> str:
    from ..api.config import config_help

    return (
        "config keys (in a config file's sections, or as SECTION.KEY=VALUE overrides; values are\n"
        "parsed with the key's type; keys inside mappings too, e.g. train.model.width=256):\n\n"
        + config_help(sections)
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="interpolant", description=DESCRIPTION, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for models under 1M parameters, else the free "
        "cores; OMP_NUM_THREADS is respected)",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show Python tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # train
    p = sub.add_parser(
        "train",
        help="train a model from a preset or a config file",
        formatter_class=_Formatter,
        description=(
            "Train a model. The config comes from --preset and/or --config (a YAML, TOML or JSON\n"
            "file of sections data/train/sample/eval, optionally with `preset: NAME`), then the\n"
            "dotted overrides. Writes train.run_dir: checkpoints/, stats.jsonl, config.json,\n"
            "run_config.json, loss_curve.png. Resumes from the newest checkpoint there.\n"
            "Runs under torchrun too: torchrun --nproc_per_node=2 -m interpolant.cli train ...\n\n"
            + _presets_text()
        ),
        epilog=_config_epilog(("data", "train", "sample", "eval")),
    )
    p.add_argument("--preset", help="a named preset (see below)")
    p.add_argument("-c", "--config", type=Path, help="a config file (.yaml, .yml, .toml, .json)")
    p.add_argument("--run-dir", help="shorthand for train.run_dir=DIR")
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config (YAML) and exit"
    )
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE", help="config overrides")

    # sample
    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        formatter_class=_Formatter,
        description=(
            "Draw samples from the newest checkpoint of RUN_DIR (EMA weights unless --raw-weights)."
            "\nWrites OUT/samples.npz (samples in model space, samples_data in the data's units,"
            "\nlabels, meta) and OUT/samples.png: an image grid, or a 2-D scatter over held-out "
            "data.\nOptions default to the run's sample section (run_config.json)."
        ),
        epilog=_config_epilog(("sample",)),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--checkpoint", type=Path, help="a checkpoint folder (default: the newest)")
    p.add_argument("--solver", help="a registered solver (interpolant info lists them)")
    p.add_argument("--nfe", type=int, help="model evaluations per sample")
    p.add_argument(
        "--grid",
        help="time grid: auto (the default rule), uniform, karras, logsnr, shift, calibrated "
        "(searched on this model once, cached in the run), or a grid file (.json)",
    )
    p.add_argument("-n", "--n", type=int, dest="n", help="number of samples")
    p.add_argument("--seed", type=int, help="sample i uses noise seeded by (seed, i)")
    p.add_argument("--batch-size", type=int, help="samples per sampler call")
    p.add_argument("--class-label", type=int, help="conditional runs: sample only this class")
    p.add_argument("--raw-weights", action="store_true", help="the trained weights, not the EMA")
    p.add_argument("--float64", action="store_true", help="solver arithmetic in float64")
    p.add_argument(
        "--teleport",
        type=float,
        metavar="F",
        help="jump over fraction F of the steps along the flow of the Gaussian fitted to the "
        "training data (seed 32; unconditional runs)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/samples)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--trajectories", action="store_true", help="keep the paths (2-D: trajectories.png)"
    )
    g = p.add_argument_group("guidance (docs/howto/guidance.md)")
    g.add_argument(
        "--guidance",
        metavar="SPEC",
        help="NAME:SCALE[:SCHEDULE][@T_LO-T_HI], e.g. cfg:3.0 or cfg:3.0@0.2-0.8 (class-"
        "conditional runs); autoguidance:2.0 with --guidance-reference",
    )
    g.add_argument(
        "--guidance-schedule", help="constant, linear or cosine (for specs that name none)"
    )
    g.add_argument("--guidance-interval", metavar="LO-HI", help="w = 1 outside [LO, HI]")
    g.add_argument(
        "--guidance-reference", type=Path, metavar="RUN_DIR", help="autoguidance: the weaker run"
    )
    g = p.add_argument_group("inference-time scaling (docs/howto/inference-scaling.md)")
    g.add_argument(
        "--search", metavar="METHOD[:N]", help="best_of_n:N, random:N, zero_order:K or paths:W"
    )
    g.add_argument(
        "--steer", choices=["fk", "rbf"], help="FK steering, or RBF (rollover budget forcing)"
    )
    g.add_argument("--particles", type=int, default=4, help="FK particles per sample")
    g.add_argument(
        "--reward",
        metavar="SPEC",
        help="classifier:C, linear:A;b=B, quadratic:C;q=Q, component:ORACLE:K or module:function",
    )
    g.add_argument("--budget", type=int, help="model evaluations per final sample (a cap)")
    g.add_argument("--temperature", type=float, help="FK: target p(x) exp(r(x) / temperature)")
    g.add_argument("--potential", choices=["diff", "max", "sum"], help="FK potential")
    p.add_argument("overrides", nargs="*", metavar="sample.KEY=VALUE", help="sample overrides")

    from .analyze import add_parser as add_analyze
    from .distill import add_parser as add_distill
    from .graphs import add_parser as add_graphs
    from .inverse import add_parser as add_inverse
    from .schedule import add_parser as add_schedule

    add_inverse(sub, _Formatter)
    add_schedule(sub, _Formatter)
    add_analyze(sub, _Formatter)
    add_graphs(sub, _Formatter)
    add_distill(sub, _Formatter)
    from .forecast import add_parser as add_forecast

    add_forecast(sub, _Formatter)
    from .data import add_parser as add_data

    add_data(sub, _Formatter)
    from .multitask import add_parser as add_multitask

    add_multitask(sub, _Formatter)

    # eval
    p = sub.add_parser(
        "eval",
        help="metrics of samples against held-out data",
        formatter_class=_Formatter,
        description=(
            "Compare samples (a samples.npz, its folder, or a run folder's samples/) with the\n"
            "held-out split of the data they were trained on. auto = Frechet distance in the\n"
            "shipped digit classifier's feature space (+ precision/recall there) for digits;\n"
            "sliced Wasserstein, MMD, energy distance and precision/recall otherwise.\n"
            "Prints the metrics and writes metrics.json beside the samples (or --out)."
        ),
        epilog=_config_epilog(("eval",)),
    )
    p.add_argument("samples", type=Path, metavar="SAMPLES")
    p.add_argument("--data", help="the data set or path to compare with (default: the run's)")
    p.add_argument("--metrics", help="comma-separated: auto, fd, sliced_wasserstein, mmd, ...")
    p.add_argument("--n-reference", type=int, help="held-out examples to use")
    p.add_argument(
        "--inception",
        metavar="PATH",
        help="pytorch-fid Inception-v3 weights (pt_inception-2015-12-05-*.pth, never "
        "downloaded): adds FID and KID for images",
    )
    p.add_argument("--out", type=Path, help="where to write metrics.json")
    p.add_argument("overrides", nargs="*", metavar="eval.KEY=VALUE", help="eval overrides")

    # demo
    p = sub.add_parser(
        "demo",
        help="rectified flow on 8x8 digits, end to end (what `make demo` runs)",
        formatter_class=_Formatter,
        description=(
            "Train the digits-flow preset on the 1500 training digits, sample with its 10-NFE\n"
            "solver and with a 100-NFE sampler, and write samples_nfe10.png, samples_nfe100.png,\n"
            "loss_curve.png and metrics.json (Frechet distances in the digit classifier's feature\n"
            "space against the held-out digits, with the training digits as floor and the noise\n"
            "as ceiling) into --out. A second run resumes the finished training (--fresh\n"
            "retrains). It uses one CPU thread unless --threads (before `demo`) says otherwise."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--fresh", action="store_true", help="delete OUT/run and train again")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("-n", "--n", type=int, default=1000, dest="n", help="samples per sampler")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE", help="config overrides")

    # info
    p = sub.add_parser("info", help="versions, devices and every registry")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--options",
        nargs=2,
        metavar=("KIND", "NAME"),
        help="the options of one registered object, e.g. --options solver unipc "
        "(kinds: solver, grid, path, time, weighting)",
    )
    p.add_argument(
        "--samplers",
        action="store_true",
        help="diffusers, k-diffusion, A1111 and ComfyUI sampler names and what runs them here",
    )

    # repro
    p = sub.add_parser(
        "repro",
        help="list or run the reproductions of the seed papers",
        formatter_class=_Formatter,
        description=(
            "Run one reproduction: print its measured numbers and whether the claim held, append\n"
            "the JSON row to benchmarks/results/repro.jsonl (full runs; quick runs with --record)\n"
            "and regenerate docs/reproductions.md from the rows. One CPU thread unless --threads."
        ),
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a reproduction (see --list)")
    p.add_argument("--list", action="store_true", help="list every registered reproduction")
    p.add_argument("--quick", action="store_true", help="small settings (seconds)")
    p.add_argument("--seed", type=int, default=0)
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--record", action="store_true", help="record a quick run too")
    rec.add_argument("--no-record", action="store_true", help="record nothing")
    p.add_argument("--results", type=Path, help="JSON-lines file of rows (default: the checkout's)")
    p.add_argument("--report", type=Path, help="markdown page to regenerate")
    return parser


# ----------------------------------------------------------------------------------------------
# Commands.


def cmd_train(args: argparse.Namespace) -> int:
    from ..api import dump_config, resolve_config
    from ..api.runs import is_main_process, train

    if args.preset is None and args.config is None:
        raise UserError("give --preset NAME or --config FILE (interpolant train --help)")
    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"train.run_dir={args.run_dir}")
    config = resolve_config(args.preset, args.config, overrides)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    result = train(config)
    if is_main_process():
        cfg = result.config.train
        print(
            f"trained {result.trainer.step} of {cfg.steps} steps; run folder {result.run_dir}/ "
            "(checkpoints/, stats.jsonl, run_config.json, loss_curve.png)\n"
            f"next: interpolant sample {result.run_dir}"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..api.demo import demo, format_demo

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    metrics = demo(
        args.out,
        overrides,
        fresh=args.fresh,
        progress=not args.no_progress,
        n_samples=args.n,
        threads=args.threads or 1,
    )
    print(format_demo(metrics, args.out))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import cmd_info as run

    return run(args)


def cmd_repro(args: argparse.Namespace) -> int:
    from ..repro import get_repro, list_repros
    from ..repro.base import append_row, default_results_path, format_result, make_row
    from ..repro.report import write_report

    if args.list or args.name is None:
        repros = list_repros()
        if args.name is None and not args.list:
            raise UserError("give a reproduction NAME or --list")
        width = max((len(n) for n in repros), default=0)
        for name, r in repros.items():
            print(f"{name:<{width}}  seed paper {r.paper:>2}: {r.title}")
            print(f"{'':<{width}}  claim: {r.claim}")
        return 0
    repro = get_repro(args.name)
    if args.threads is None:  # as python -m interpolant.repro.NAME: one thread by default
        import torch

        torch.set_num_threads(1)
    result = repro(quick=args.quick, seed=args.seed)
    print(format_result(repro, result))
    if args.no_record or (args.quick and not args.record):
        return 0
    results = args.results or default_results_path()
    append_row(make_row(repro, result, args.seed), results)
    report = args.report or results.parents[2] / "docs" / "reproductions.md"
    write_report(results, report)
    print(f"recorded in {results}; regenerated {report}")
    return 0


def cmd_inverse(args: argparse.Namespace) -> int:
    from .inverse import cmd_inverse as run

    return run(args)


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import cmd_analyze as run

    return run(args)


def cmd_schedule(args: argparse.Namespace) -> int:
    from .schedule import cmd_schedule as run

    return run(args)


def cmd_graphs(args: argparse.Namespace) -> int:
    from .graphs import cmd_graphs as run

    return run(args)


def cmd_distill(args: argparse.Namespace) -> int:
    from .distill import cmd_distill as run

    return run(args)


def cmd_forecast(args: argparse.Namespace) -> int:
    from .forecast import cmd_forecast as run

    return run(args)


def cmd_eval_any(args: argparse.Namespace) -> int:
    """``interpolant eval``: a time-series run folder is scored by cli/forecast.py (CRPS, MASE,
    coverage of forecasts of its test windows), anything else by cli/sample.py."""
    from .forecast import cmd_eval_series, is_series_run

    return cmd_eval_series(args) if is_series_run(args.samples) else cmd_eval(args)


def cmd_data(args: argparse.Namespace) -> int:
    from .data import cmd_data as run

    return run(args)


def cmd_multitask(args: argparse.Namespace) -> int:
    from .multitask import cmd_multitask as run

    return run(args)


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval_any,
    "demo": cmd_demo,
    "info": cmd_info,
    "repro": cmd_repro,
    "inverse": cmd_inverse,
    "schedule": cmd_schedule,
    "analyze": cmd_analyze,
    "graphs": cmd_graphs,
    "distill": cmd_distill,
    "forecast": cmd_forecast,
    "data": cmd_data,
    "multitask": cmd_multitask,
}


def _run_text(argv: list[str], traceback: bool) -> int:
    from .text import run_topic

    try:
        return run_topic(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except Exception as err:
        return _report(err, traceback)


#: What the command line says under the traceback of an exception that is not a UserError.
BUG_NOTE = (
    "interpolant: internal error: this is a bug in interpolant, not in what you asked for; "
    "please report it with the command you ran and the traceback above"
)


def _report(err: Exception, traceback: bool) -> int:
    """A :class:`UserError` as one line (``--traceback``: re-raised); anything else is a bug:
    its traceback, then :data:`BUG_NOTE`."""
    if isinstance(err, BrokenPipeError):
        return broken_pipe()
    if traceback:
        raise err
    if isinstance(err, UserError):
        print(f"interpolant: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    import traceback as tb

    tb.print_exception(err, file=sys.stderr)
    print(BUG_NOTE, file=sys.stderr)
    return EXIT_BUG


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    Ctrl-C or SIGTERM: one line (for training: where the checkpoint is and how to resume)."""
    from ..threads import get_policy, set_policy

    argv = list(sys.argv[1:] if argv is None else argv)
    policy = get_policy()
    try:
        return _main(argv)
    except KeyboardInterrupt as err:
        return interrupted(err, argv)
    finally:
        set_policy(policy)  # the thread policy is the command's, not the calling program's


def _main(argv: list[str]) -> int:
    parser = build_parser()
    from .text import TOPICS

    # `train text`, `sample text` and `sample json` have their own parsers (cli/text.py); the
    # global options before them still apply.
    head = 0
    while head < len(argv) and argv[head] in ("--traceback", "--threads"):
        head += 2 if argv[head] == "--threads" else 1
    if len(argv) >= head + 2 and (argv[head], argv[head + 1]) in TOPICS:
        if "--threads" in argv[:head]:
            import torch

            torch.set_num_threads(max(1, int(argv[argv.index("--threads") + 1])))
        elif "OMP_NUM_THREADS" not in os.environ:
            from ..threads import set_policy

            set_policy("auto")
        return _run_text(argv[head:], "--traceback" in argv[:head])
    try:
        args, extra = parser.parse_known_args(argv)
        # Overrides may stand between options (argparse takes one run of positionals).
        if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed)
        return int(exit_.code or 0)
    if args.version:
        from .. import __version__

        print(f"interpolant {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.threads is not None:
        if args.threads < 1:
            print(
                f"interpolant: error: --threads must be >= 1, got {args.threads}", file=sys.stderr
            )
            return EXIT_USAGE
        import torch

        torch.set_num_threads(args.threads)
    elif "OMP_NUM_THREADS" not in os.environ and args.command not in ("demo", "repro"):
        from ..threads import set_policy

        set_policy("auto")  # threads from the model's size and the free cores (threads.py)
    try:
        return COMMANDS[args.command](args)
    except Exception as err:
        return _report(err, args.traceback)


if __name__ == "__main__":
    sys.exit(main())
