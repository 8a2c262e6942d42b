"""Text commands: ``interpolant train text``, ``interpolant sample text`` and
``interpolant sample json`` (masked diffusion language models; docs/howto/text-diffusion.md and
docs/howto/text-sampling.md)."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import MissingFileError, UserError

if TYPE_CHECKING:
    from ..text.loop import TextSampler

#: (command, topic) pairs this module handles.
TOPICS = {("train", "text"), ("sample", "text"), ("sample", "json"), ("eval", "text")}


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=100)


def train_parser() -> argparse.ArgumentParser:
    from ..text.train import PRESETS

    p = argparse.ArgumentParser(
        prog="interpolant train text",
        formatter_class=_formatter,
        description="Train a masked-diffusion (or uniform-noise, or autoregressive) text model.\n"
        "Writes RUN_DIR/text.json (spec, tokenizer, model), checkpoints (with EMA weights),\n"
        "stats.jsonl and eval.json (held-out NLL bound per token and, for the synthetic\n"
        "languages, their exact entropy). Your own text: --data FILE.txt|FILE.jsonl|FOLDER.",
        epilog=keys_help(),
    )
    p.add_argument("--preset", help=f"one of {', '.join(sorted(PRESETS))} (default markov-char, "
                   "or text-file with --data)")  # fmt: skip
    p.add_argument("--run-dir", type=Path, help="output folder (default runs/text-PRESET)")
    p.add_argument("--data", type=Path, help="your text: one sequence per line (.txt), a field "
                   "of JSON lines (.jsonl, data.field=text) or a folder of them")  # fmt: skip
    p.add_argument("--held-out", type=Path, help="held-out file (default: the last 5%% of --data)")
    p.add_argument("--tokenizer", choices=["char", "bpe"], help="learned on --data (default char)")
    p.add_argument(
        "--too-long",
        choices=["truncate", "refuse"],
        help="lines longer than data.length (default truncate, with a count)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved spec and exit")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="e.g. steps=400 lr=1e-3 model.dim=128 data.n=5000 loss=ar path.schedule=cosine",
    )
    return p


def keys_help() -> str:
    """The --help epilog: each preset's data keys (with values) and the other sections' keys."""
    from ..text.train import DATA_DEFAULTS, PRESETS, resolve, valid_keys

    lines = ["keys (KEY=VALUE; an unknown or ignored key is refused):"]
    for name in sorted(PRESETS):
        data = resolve(name)["data"]
        data = {**DATA_DEFAULTS[data["name"]], **data}
        shown = ", ".join(f"data.{k}={v!r}" for k, v in data.items() if k != "name")
        lines.append(f"  {name} (data.name={data['name']}): {shown}")
    lines.append(
        f"  data.name= starts from that kind's defaults: {', '.join(sorted(DATA_DEFAULTS))}"
    )
    keys = valid_keys(resolve("markov-char"))
    lines.append(
        "  loss=mask|uniform|ar  estimator=count-sqrt|count|time (masked bound's training form) "
        "time_limit_s=SECONDS (stop with a checkpoint)"
    )
    for section in ("model", "path"):
        lines.append(f"  {section}.: {', '.join(keys[section])}")
    lines.append(f"  train fields (with or without 'train.'): {', '.join(keys['train'])}")
    return "\n".join(textwrap.fill(line, 98, subsequent_indent="      ") for line in lines)


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
    names = sorted(METHODS) if json_mode else [*sorted(METHODS), AUTOREGRESSIVE]
    p.add_argument(
        "--sampler",
        choices=names,
        help="default: confidence (json), first_hitting (a masked run), autoregressive (an ar run)",
    )
    p.add_argument(
        "--steps", type=int, help=f"grid steps (ancestral, confidence; default {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--temperature",
        type=float,
        help="p^(1/T); confidence: its own (default 0 = greedy, LLaDA), others default 1",
    )
    p.add_argument("--order", help="confidence: commit order (confidence, margin, entropy, random)")
    p.add_argument("--block-length", type=int, help="confidence: semi-autoregressive blocks")
    p.add_argument("--group", type=int, help="first_hitting: tokens unmasked per call (1: exact)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal only; in a log, a line every 30 s)",
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
    p.add_argument(
        "--out",
        type=Path,
        help="JSON-lines file, one sample a line (default RUN_DIR/samples.jsonl)",
    )
    p.add_argument("--show", type=int, default=3, help="samples printed (default 3)")
    return p


#: The --sampler of causal (``loss=ar``) runs: left to right, L calls.
AUTOREGRESSIVE = "autoregressive"
#: Flag -> (method that takes it, option name).
METHOD_FLAGS = {
    "order": ("confidence", "order"),
    "block_length": ("confidence", "block_length"),
    "group": ("first_hitting", "group"),
}


def cmd_train_text(argv: Sequence[str]) -> int:
    import sys

    from ..api.config import parse_scalar
    from ..text.train import resolve, train_text

    args = train_parser().parse_intermixed_args(list(argv))
    overrides: dict[str, Any] = {}
    preset = args.preset or ("text-file" if args.data else "markov-char")
    if args.data is not None:
        overrides.update({"data.name": "file", "data.path": str(args.data)})
    for flag, key in (("held_out", "data.held_out"), ("tokenizer", "data.tokenizer"),
                      ("too_long", "data.too_long")):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            if args.data is None:
                raise UserError(f"--{flag.replace('_', '-')} needs --data FILE")
            overrides[key] = str(value)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"overrides must be KEY=VALUE, got {item!r}")
        overrides[key] = parse_scalar(value)
    if "progress" not in overrides and not sys.stderr.isatty():
        overrides["progress"] = False  # a log file: the trainer's stats lines, no bar redraws
    if args.print_config:
        print(json.dumps(resolve(preset, overrides), indent=2))
        return 0
    run_dir = args.run_dir or Path("runs") / f"text-{preset}"
    run = train_text(preset, overrides, run_dir)
    eval_file = Path(run.run_dir) / "eval.json"
    summary = json.loads(eval_file.read_text()) if eval_file.is_file() else {}
    print(f"trained {preset} for {run.step} steps into {run.run_dir}")
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


def _spec(args: argparse.Namespace) -> TextSampler:
    """The :class:`~interpolant.text.loop.TextSampler` the flags describe (a flag its sampler
    does not take is refused)."""
    from ..text.loop import METHODS, TextSampler, as_method

    method: dict[str, Any] = {"name": args.sampler}
    for flag, (owner, option) in METHOD_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.sampler != owner:
            raise UserError(f"--{flag.replace('_', '-')} is an option of --sampler {owner}")
        method[option] = value
    if args.sampler == "confidence" and args.temperature is not None:
        method["temperature"] = args.temperature
    steps = args.steps
    if steps is None and METHODS[args.sampler].uses_steps:
        steps = DEFAULT_STEPS
    return TextSampler(
        as_method(method), steps=steps, precision=args.precision, cache=args.cache, seed=args.seed
    )


def cmd_sample_text(argv: Sequence[str], topic: str) -> int:
    from ..text import load_text_run

    args = sample_parser(topic).parse_args(list(argv))
    run = load_text_run(args.run_dir, ema=not args.raw_weights)
    if args.sampler is None:
        json_default = "confidence" if topic == "json" else "first_hitting"
        args.sampler = AUTOREGRESSIVE if run.kind == "ar" else json_default
    if (run.kind == "ar") != (args.sampler == AUTOREGRESSIVE):
        raise UserError(
            f"{args.run_dir} is a {run.kind!r} run: "
            + (
                "sample it with --sampler autoregressive"
                if run.kind == "ar"
                else "--sampler autoregressive needs a causal (loss=ar) run"
            )
        )
    if run.kind == "uniform":
        raise UserError(f"{args.run_dir} is a 'uniform' run; these samplers need a masked run")
    if topic == "json":
        record, texts = _sample_json(args, run)
    else:
        record, texts = _sample_plain(args, run)
    out = args.out or Path(args.run_dir) / "samples.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"index": i, "text": text}) + "\n")
    for text in texts[: max(args.show, 0)]:
        print(repr(text) if topic == "text" else text)
    record["distinct"] = len(set(texts))
    print(
        f"{record['summary']}; {record['distinct']}/{len(texts)} distinct; "
        f"{record['calls_per_sample']:.1f} model calls per sample ({record['nfe']} batched, "
        f"{args.sampler}); {record['wall_s']:.2f} s; wrote {out}"
    )
    if args.sampler == "confidence" and args.temperature is None and record["distinct"] == 1:
        print("note: confidence decoding is greedy at temperature 0; pass --temperature 1")
    return 0


def _sample_json(args: argparse.Namespace, run: Any) -> tuple[dict[str, Any], list[str]]:
    from ..text.s3 import sample_json
    from ..text.train import scaffold_options

    if not args.schema.is_file():
        raise MissingFileError(f"--schema {args.schema}: no such file")
    schema = json.loads(args.schema.read_text())
    prompt = run.tokenizer.encode(args.prompt) if args.prompt else []
    out = sample_json(
        run.model,
        run.tokenizer,
        schema,
        _spec(args),
        n=args.n,
        prompt=prompt,
        budget=args.budget,
        **scaffold_options(run.spec.get("data", {}).get("layout")),
    )
    texts = out.texts
    valid = sum(_is_json(t) for t in texts)
    return {
        "summary": f"{valid}/{len(texts)} valid JSON",
        "nfe": out.sample.nfe,
        "calls_per_sample": float(out.sample.row_evals.double().mean()),
        "wall_s": out.sample.wall_s,
    }, texts


def _sample_plain(args: argparse.Namespace, run: Any) -> tuple[dict[str, Any], list[str]]:
    from ..text.autoregressive import sample_autoregressive
    from ..text.loop import Tempered, masked_canvas, sample_text
    from ..text.metrics import true_nll

    context = int(run.spec["data"].get("length") or 0) or None
    tokenizer, vocab = run.tokenizer, run.tokenizer.vocab_size
    length = args.length or context
    if length is None:
        raise UserError("--length is required: the run does not record its sequence length")
    if context is not None and length > context:
        raise UserError(
            f"--length {length} is longer than the model's context ({context} tokens, the "
            "length it was trained on)"
        )
    ids = tokenizer.encode(args.prefix) if args.prefix else []  # refuses unknown characters
    if len(ids) > length:
        raise UserError(f"--prefix is {len(ids)} tokens, longer than --length {length}")
    prefix = torch.tensor(ids, dtype=torch.long)
    if args.sampler == AUTOREGRESSIVE:
        for flag in ("steps", "order", "block_length", "group"):
            if getattr(args, flag) is not None or args.cache:
                raise UserError("--sampler autoregressive takes --temperature, --prefix, -n only")
        sample: Any = sample_autoregressive(
            run.model, args.n, length, prefix=prefix, temperature=args.temperature or 1.0,
            seed=args.seed, progress=args.progress,
        )  # fmt: skip
    else:
        spec = _spec(args)
        denoiser = run.model
        if args.temperature is not None and args.sampler != "confidence":
            denoiser = Tempered(run.model, args.temperature)
        canvas = masked_canvas(args.n, length, vocab, prefix)
        sample = sample_text(
            denoiser, canvas, spec, vocab_size=vocab, path=run.path, progress=args.progress
        )
    record: dict[str, Any] = {
        "summary": f"{args.n} samples of {length} tokens",
        "nfe": sample.nfe,
        "calls_per_sample": float(sample.row_evals.double().mean()),
        "wall_s": sample.wall_s,
    }
    if run.language is not None and (length == context or not hasattr(run.language, "length")):
        nll = true_nll(sample.tokens, run.language.log_prob)
        record["summary"] += f", true NLL {nll:.3f} nats/token"
    texts = tokenizer.decode_batch(sample.tokens)
    pad = run.spec["data"].get("pad") if run.spec["data"]["name"] == "file" else None
    if pad is not None:
        from ..text.userdata import strip_padding

        texts = [strip_padding(t, pad) for t in texts]
    return record, texts


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="interpolant eval text",
        formatter_class=_formatter,
        description="Held-out NLL bound per token of a text run (the exact NLL of an ar run),\n"
        "written to RUN_DIR/eval.json: on the run's own held-out rows, or on --held-out FILE.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a text run (CLI or Python)")
    p.add_argument("--held-out", type=Path, help="a .txt / .jsonl file or folder to score")
    p.add_argument("--field", default="text", help="the JSON-lines field (default text)")
    p.add_argument("--n-t", type=int, default=8, help="stratified times per row (default 8)")
    p.add_argument("--raw-weights", action="store_true", help="the trained weights, not the EMA")
    return p


def cmd_eval_text(argv: Sequence[str]) -> int:
    from ..text import load_text_run
    from ..text.train import build_data, evaluate_text_run
    from ..text.userdata import encode_sequences, pad_rows, read_sequences

    args = eval_parser().parse_args(list(argv))
    run = load_text_run(args.run_dir, ema=not args.raw_weights)
    data_spec = run.spec["data"]
    if args.held_out is not None:
        length, pad = int(data_spec["length"]), data_spec.get("pad")
        if pad is None:
            raise UserError(f"{args.run_dir} records no pad symbol: --held-out needs a file run")
        seqs = read_sequences(args.held_out, args.field)
        rows = encode_sequences(seqs, run.tokenizer, length, "truncate", pad)
        held = pad_rows(rows.ids, length, run.tokenizer.token_id(pad))
        info = {"held_out": str(args.held_out), "truncated_held_out": rows.truncated}
    elif data_spec["name"] == "custom":
        raise UserError(f"{args.run_dir} was trained from Python: pass --held-out FILE")
    else:
        seed = json.loads((run.run_dir / "config.json").read_text()).get("seed", 0)
        data = build_data({k: v for k, v in data_spec.items()}, seed=int(seed))
        held, info = data.held_out, data.info
    print(json.dumps(evaluate_text_run(run, held, args.n_t, info), indent=2))
    return 0


def run_topic(argv: Sequence[str]) -> int:
    """Dispatch ``[command, topic, *rest]`` to the text commands."""
    command, topic, rest = argv[0], argv[1], argv[2:]
    if command == "train":
        return cmd_train_text(rest)
    if command == "eval":
        return cmd_eval_text(rest)
    return cmd_sample_text(rest, topic)
