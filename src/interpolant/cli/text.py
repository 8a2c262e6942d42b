"""Text commands: ``interpolant train text``, ``interpolant sample text`` and
``interpolant sample json`` (masked diffusion language models; docs/howto/text-diffusion.md and
docs/howto/text-sampling.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import MissingFileError, UserError

if TYPE_CHECKING:
    from ..text.loop import TextSampler

#: (command, topic) pairs this module handles.
TOPICS = {("train", "text"), ("sample", "text"), ("sample", "json")}


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=100)


def train_parser() -> argparse.ArgumentParser:
    from ..text.train import PRESETS

    p = argparse.ArgumentParser(
        prog="interpolant train text",
        formatter_class=_formatter,
        description="Train a masked-diffusion (or uniform-noise, or autoregressive) text model.\n"
        "Writes RUN_DIR/text.json, checkpoints and eval.json (held-out NLL bound per token and,\n"
        "for the synthetic languages, their exact entropy).",
    )
    p.add_argument("--preset", default="markov-char", help=f"one of {', '.join(sorted(PRESETS))}")
    p.add_argument("--run-dir", type=Path, help="output folder (default runs/text-PRESET)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="e.g. steps=400 lr=1e-3 model.dim=128 data.n=5000 loss=ar path.schedule=cosine",
    )
    return p


#: Grid steps of the samplers that take steps (ancestral, confidence) when --steps is not given.
DEFAULT_STEPS = 64


def sample_parser(topic: str) -> argparse.ArgumentParser:
    from ..text.loop import METHODS

    json_mode = topic == "json"
    p = argparse.ArgumentParser(
        prog=f"interpolant sample {topic}",
        formatter_class=_formatter,
        description=(
            "Fill a JSON schema's value slots with a trained text run (S3 scaffolding): the\n"
            "structure tokens are fixed, only the values are denoised."
            if json_mode
            else "Sample text from a trained masked-diffusion run."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run of `train text`")
    if json_mode:
        p.add_argument("--schema", type=Path, required=True, help="a JSON schema file")
        p.add_argument("--prompt", default="", help="text placed before the scaffold")
        p.add_argument("--budget", type=int, default=16, help="tokens per string value slot")
    else:
        p.add_argument("--length", type=int, help="tokens per sample (default: the trained length)")
        p.add_argument("--prefix", default="", help="text the samples start with (kept as given)")
    default_sampler = "confidence" if json_mode else "first_hitting"
    p.add_argument("--sampler", default=default_sampler, choices=sorted(METHODS))
    p.add_argument(
        "--steps", type=int, help=f"grid steps (ancestral, confidence; default {DEFAULT_STEPS})"
    )
    p.add_argument("-n", "--n", type=int, default=8, dest="n", help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-sample random streams")
    p.add_argument(
        "--precision",
        choices=["float64", "float32"],
        default="float64",
        help="categorical sampling precision (float32 lowers the temperature; seed paper 7)",
    )
    p.add_argument(
        "--cache", action="store_true", help="no call for a sample whose tokens did not change"
    )
    p.add_argument("--raw-weights", action="store_true", help="the trained weights, not the EMA")
    p.add_argument("--out", type=Path, help="a JSON file for the samples (default: print only)")
    return p


def cmd_train_text(argv: Sequence[str]) -> int:
    from ..api.config import parse_scalar
    from ..text.train import train_text

    args = train_parser().parse_args(list(argv))
    overrides: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"overrides must be KEY=VALUE, got {item!r}")
        overrides[key] = parse_scalar(value)
    run_dir = args.run_dir or Path("runs") / f"text-{args.preset}"
    run = train_text(args.preset, overrides, run_dir)
    eval_file = Path(run.run_dir) / "eval.json"
    summary = json.loads(eval_file.read_text()) if eval_file.is_file() else {}
    print(f"trained {args.preset} for {run.step} steps into {run.run_dir}")
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


def _spec(args: argparse.Namespace) -> TextSampler:
    """The :class:`~interpolant.text.loop.TextSampler` the flags describe."""
    from ..text.loop import METHODS, TextSampler

    steps = args.steps
    if steps is None and METHODS[args.sampler].uses_steps:
        steps = DEFAULT_STEPS
    return TextSampler(
        args.sampler, steps=steps, precision=args.precision, cache=args.cache, seed=args.seed
    )


def cmd_sample_text(argv: Sequence[str], topic: str) -> int:
    from ..text import load_text_run
    from ..text.loop import masked_canvas, sample_text
    from ..text.metrics import true_nll
    from ..text.s3 import sample_json
    from ..text.train import scaffold_options

    args = sample_parser(topic).parse_args(list(argv))
    spec = _spec(args)
    run = load_text_run(args.run_dir, ema=not args.raw_weights)
    if run.kind != "mask":
        raise UserError(
            f"{args.run_dir} is a {run.kind!r} run; these samplers need a masked-diffusion run"
        )
    context = int(run.spec["data"].get("length", 0)) or None
    tokenizer, vocab = run.tokenizer, run.tokenizer.vocab_size
    record: dict[str, Any] = {"run_dir": str(args.run_dir), "sampler": spec.config()}
    if topic == "json":
        if not args.schema.is_file():
            raise MissingFileError(f"--schema {args.schema}: no such file")
        schema = json.loads(args.schema.read_text())
        prompt = tokenizer.encode(args.prompt) if args.prompt else []
        out = sample_json(
            run.model,
            tokenizer,
            schema,
            spec,
            n=args.n,
            prompt=prompt,
            budget=args.budget,
            **scaffold_options(run.spec.get("data", {}).get("layout")),
        )
        texts, nfe = out.texts, out.sample.nfe
        valid = sum(_is_json(t) for t in texts)
        record["json_valid"] = valid / len(texts)
        summary = f"{valid}/{len(texts)} valid JSON"
    else:
        length = args.length or context
        if length is None:
            raise UserError("--length is required: the run does not record its sequence length")
        if context is not None and length > context:
            raise UserError(
                f"--length {length} is longer than the model's context ({context} tokens, the "
                "length it was trained on)"
            )
        ids = tokenizer.encode(args.prefix) if args.prefix else []
        if len(ids) > length:
            raise UserError(f"--prefix is {len(ids)} tokens, longer than --length {length}")
        canvas = masked_canvas(args.n, length, vocab, torch.tensor(ids, dtype=torch.long))
        sample = sample_text(run.model, canvas, spec, vocab_size=vocab)
        texts, nfe = tokenizer.decode_batch(sample.tokens), sample.nfe
        summary = f"{args.n} samples of {length} tokens"
        if run.language is not None:
            if length == context or not hasattr(run.language, "length"):
                record["true_nll_per_token"] = true_nll(sample.tokens, run.language.log_prob)
            if "true_nll_per_token" in record:
                summary += f", true NLL {record['true_nll_per_token']:.3f} nats/token"
    record.update({"nfe": nfe, "texts": texts})
    for text in texts:
        print(repr(text) if topic == "text" else text)
    print(f"{summary}, {nfe} model calls ({args.sampler})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def run_topic(argv: Sequence[str]) -> int:
    """Dispatch ``[command, topic, *rest]`` to the text commands."""
    command, topic, rest = argv[0], argv[1], argv[2:]
    if command == "train":
        return cmd_train_text(rest)
    return cmd_sample_text(rest, topic)
