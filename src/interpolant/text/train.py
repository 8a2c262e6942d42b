"""Train text diffusion (and autoregressive) models through the project's trainer.

``train_text(preset, overrides, run_dir)`` builds the data, tokenizer, model and objective of a
preset, runs :class:`interpolant.train.Trainer` (one process or ``torchrun`` DDP, checkpoints,
EMA, resume) and evaluates the bound on held-out data. ``load_text_run(run_dir)`` gives back the
trained denoiser, its tokenizer and schedule.

Presets (each a JSON spec with sections data, model, loss, path, train):

=============  ==========================================================================
markov-char    first-order Markov chain, 8 letters, length 32 (exact entropy known);
               trains to within ~0.1 nats/token of the entropy in 1-3 minutes on 2 cores
pcfg           the toy English-like PCFG of ``text.pcfg``, 12 words + pad, length 16
corpus-char    characters of the standard-library docstrings (``corpora.stdlib_docs``)
text-file      the user's own text (``--data FILE.txt|FILE.jsonl|FOLDER``, ``text.userdata``):
               one sequence per line, a character (or BPE) tokenizer learned on it
json-records   biographical records as one-line JSON (``corpora.records``), characters, in
               the paper's S3 slot layout ("null-pad": string quotes fixed, values followed
               by "~" pads inside them, null = an all-pad slot) with absolute positions;
               ~3 minutes on one thread (seed 29)
=============  ==========================================================================

Overrides are dotted keys: ``{"steps": 200, "model.dim": 64, "data.n": 5000, "loss": "uniform"}``
(``estimator`` "count-sqrt" (default), "count" or "time": the masked bound's training
estimator, ``text.losses``;
``time_limit_s``: stop, with a checkpoint, once training has run this many seconds)
(a key without a section is a :class:`~interpolant.train.TrainConfig` field). Every key is
checked: a key that the data kind, the model or the path does not take is refused with the valid
ones listed (:func:`valid_keys`); setting ``data.name`` starts the data section from that
kind's defaults (:data:`DATA_DEFAULTS`). ``loss`` is "mask"
(MDLM), "uniform" (uniform-noise diffusion; the model gets a time input) or "ar" (a causal
transformer, the autoregressive baseline / EDLM energy).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import MissingFileError, UserError
from ..paths.discrete import DiscretePath
from ..randomness import derive_seed
from ..train import TrainConfig, Trainer
from ..train import checkpoint as ckpt
from . import corpora
from .losses import ESTIMATORS, TextObjective, elbo_nll
from .models import TextTransformer, build_text_model
from .s3 import Scaffold, build_scaffold
from .tokenize import Tokenizer
from .userdata import FILE_DEFAULTS, load_file_data

TEXT_FILE = "text.json"
_TRAIN = {"ema": "halflife", "ema_halflife_kimg": 2.0, "log_every": 50, "grad_clip": 1.0}

PRESETS: dict[str, dict[str, Any]] = {
    "markov-char": {
        "data": {"name": "markov", "vocab_size": 8, "length": 32, "concentration": 0.3, "n": 20000},
        "model": {"dim": 64, "depth": 2, "heads": 4, "neighbours": 2},
        "loss": "mask",
        "path": {"schedule": "log-linear", "eps": 1e-3},
        "train": {**_TRAIN, "steps": 800, "batch_size": 64, "lr": 2e-3, "checkpoint_every": 400},
    },
    "pcfg": {
        "data": {"name": "pcfg", "length": 16, "n": 10000},
        "model": {"dim": 64, "depth": 3, "heads": 4},
        "loss": "mask",
        "path": {"schedule": "log-linear", "eps": 1e-3},
        "train": {**_TRAIN, "steps": 1000, "batch_size": 64, "lr": 2e-3, "checkpoint_every": 500},
    },
    "corpus-char": {
        "data": {"name": "stdlib-docs", "length": 64, "stride": 16},
        "model": {"dim": 96, "depth": 3, "heads": 4, "neighbours": 2},
        "loss": "mask",
        "path": {"schedule": "log-linear", "eps": 1e-3},
        "train": {**_TRAIN, "steps": 2000, "batch_size": 32, "lr": 1e-3, "checkpoint_every": 500},
    },
    "text-file": {
        "data": dict(FILE_DEFAULTS),
        "model": {"dim": 96, "depth": 3, "heads": 4, "neighbours": 2},
        "loss": "mask",
        "path": {"schedule": "log-linear", "eps": 1e-3},
        "train": {**_TRAIN, "steps": 2000, "batch_size": 32, "lr": 1e-3, "checkpoint_every": 500},
    },
    "json-records": {
        "data": {
            "name": "json-records",
            "n": 5000,
            "p_missing": 0.3,
            "layout": "null-pad",
            "p_aligned": 0.5,
        },
        "model": {"dim": 64, "depth": 3, "heads": 4, "max_length": 128},
        "loss": "mask",
        "path": {"schedule": "log-linear", "eps": 1e-3},
        "train": {
            **_TRAIN,
            "steps": 1000,
            "batch_size": 32,
            "lr": 3e-3,
            "lr_schedule": "cosine",
            "lr_warmup_steps": 50,
            "lr_min_ratio": 0.05,
            "checkpoint_every": 500,
        },
    },
}
SECTIONS = ("data", "model", "path", "train")

#: Every key each data kind takes, with its default (a preset may set other values).
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "markov": {
        "name": "markov", "vocab_size": 8, "length": 32, "concentration": 0.3, "n": 20000,
        "order": 1,
    },
    "pcfg": {"name": "pcfg", "length": 16, "n": 10000},
    "stdlib-docs": {"name": "stdlib-docs", "length": 64, "stride": 16},
    "json-records": {
        "name": "json-records", "n": 5000, "p_missing": 0.3, "layout": "null-pad",
        "p_aligned": 0.5, "length": None,
    },
    "file": dict(FILE_DEFAULTS),
}  # fmt: skip
#: Keys of the model section (the text transformers' keyword arguments).
MODEL_KEYS = (
    "dim", "depth", "heads", "mlp_ratio", "dropout", "time_conditioning", "max_length",
    "neighbours",
)  # fmt: skip


@dataclass
class TextData:
    """Token rows for training and evaluation, their tokenizer and, for synthetic languages,
    the language with its exact ``log_prob`` (``None`` for real text)."""

    train: Tensor
    held_out: Tensor
    tokenizer: Tokenizer
    language: Any
    info: dict[str, Any]


@dataclass
class TextRun:
    """A trained text model as :func:`load_text_run` returns it."""

    model: nn.Module  # DiffusionTransformer (the Denoiser) or CausalTransformer, eval mode
    tokenizer: Tokenizer
    path: DiscretePath | None  # None for the autoregressive model
    kind: str  # "mask", "uniform" or "ar"
    spec: dict[str, Any]
    language: Any  # MarkovLanguage / PCFGLanguage with exact log_prob, or None
    step: int
    run_dir: Path


def resolve(preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's spec with dotted ``overrides`` applied; every key is checked
    (:func:`check_spec`), so an unknown or ignored key is refused with the valid ones listed."""
    if preset not in PRESETS:
        raise UserError(f"unknown text preset {preset!r}; choose one of {sorted(PRESETS)}")
    spec = copy.deepcopy(PRESETS[preset])
    spec["preset"] = preset
    overrides = dict(overrides or {})
    if "data.name" in overrides:  # another data kind: start from its defaults
        name = overrides.pop("data.name")
        if name not in DATA_DEFAULTS:
            raise UserError(f"unknown text data {name!r}; choose one of {sorted(DATA_DEFAULTS)}")
        spec["data"] = copy.deepcopy(DATA_DEFAULTS[name])
    train_keys = {f.name for f in fields(TrainConfig)}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if key == "loss":
            if value not in ("mask", "uniform", "ar"):
                raise UserError(f"loss must be 'mask', 'uniform' or 'ar', got {value!r}")
            spec["loss"] = value
        elif key == "time_limit_s":
            spec["time_limit_s"] = None if value is None else float(value)
        elif key == "estimator":
            if value not in ESTIMATORS:
                raise UserError(f"estimator must be one of {ESTIMATORS}, got {value!r}")
            spec["estimator"] = value
        elif not section and name in train_keys:
            spec["train"][name] = _coerce(value, spec["train"].get(name))
        elif section in SECTIONS:
            like = spec[section].get(name, DATA_DEFAULTS.get(spec["data"]["name"], {}).get(name))
            spec[section][name] = _coerce(value, like)
        else:
            raise UserError(
                f"unknown override {key!r}: use 'loss', a TrainConfig field or "
                f"'<section>.<key>' with a section in {SECTIONS} (see --help for the keys)"
            )
    if spec["loss"] == "ar" and "model.neighbours" not in overrides:
        spec["model"].pop("neighbours", None)  # the preset's, for its diffusion model
    check_spec(spec)
    return spec


def valid_keys(spec: dict[str, Any]) -> dict[str, list[str]]:
    """The keys each section of ``spec`` takes (data: those of its data kind)."""
    name = spec["data"].get("name")
    return {
        "data": sorted(DATA_DEFAULTS.get(name, {"name": None})),
        "model": sorted(MODEL_KEYS),
        "path": sorted(f.name for f in fields(DiscretePath) if f.name != "kind"),
        "train": sorted(f.name for f in fields(TrainConfig)),
    }


def check_spec(spec: dict[str, Any]) -> None:
    """Refuse a key that its section does not take (it would be silently ignored)."""
    name = spec["data"].get("name")
    if name not in DATA_DEFAULTS:
        raise UserError(f"unknown text data {name!r}; choose one of {sorted(DATA_DEFAULTS)}")
    for section, keys in valid_keys(spec).items():
        unknown = sorted(set(spec[section]) - set(keys))
        if unknown:
            where = f"{name!r} data" if section == "data" else f"the {section} section"
            raise UserError(
                f"{', '.join(f'{section}.{k}' for k in unknown)}: not a key of {where}; "
                f"valid keys: {', '.join(keys)}"
            )


def _coerce(value: Any, like: Any) -> Any:
    """Command-line strings become numbers/bools/null when the preset's value is not a string."""
    if isinstance(value, str) and not isinstance(like, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def build_data(data: dict[str, Any], seed: int = 0) -> TextData:
    """Tokens of the data section (``name`` markov, pcfg, stdlib-docs or json-records)."""
    spec = dict(data)
    name = spec.pop("name")
    gen = torch.Generator().manual_seed(seed)
    info: dict[str, Any]
    if name == "markov":
        n = spec.pop("n")
        lang = _language({"name": name, **spec}, seed)
        letters = "abcdefghijklmnopqrstuvwxyz"[: spec["vocab_size"]]
        if len(letters) != spec["vocab_size"]:
            raise UserError(f"markov data.vocab_size must be 2..26, got {spec['vocab_size']}")
        tokens = lang.sample(n + 512, gen)
        info = {"entropy_per_token": lang.sequence_entropy() / lang.length}
        return TextData(tokens[:n], tokens[n:], Tokenizer.characters(letters), lang, info)
    if name == "pcfg":
        from .pcfg import PCFGLanguage, toy_grammar

        plang = PCFGLanguage(toy_grammar(), spec["length"])
        tokens = plang.sample(spec["n"] + 512, gen)
        held = tokens[spec["n"] :]
        info = {"entropy_per_token_estimate": float(-plang.log_prob(held).mean()) / plang.length}
        tok = Tokenizer.words(plang.words)
        return TextData(tokens[: spec["n"]], held, tok, plang, info)
    if name == "stdlib-docs":
        text = corpora.stdlib_docs()
        tok = Tokenizer.characters(sorted(set(text)))
        rows = corpora.chunk(tok.encode(text), spec["length"], spec.get("stride"))
        # Held out: the last 5% of the text (its windows overlap nothing trained on).
        cut = int(0.95 * rows.shape[0])
        gap = math.ceil(spec["length"] / (spec.get("stride") or spec["length"]))
        info = {"fingerprint": corpora.fingerprint(text), "chars": len(text)}
        return TextData(rows[: cut - gap], rows[cut:], tok, None, info)
    if name == "json-records":
        return _json_records(spec, seed)
    if name == "file":
        train, held, tok, info = load_file_data({"name": name, **spec})
        return TextData(train, held, tok, None, info)
    raise UserError(f"unknown text data {name!r}: markov, pcfg, stdlib-docs or json-records")


def _json_records(spec: dict[str, Any], seed: int) -> TextData:
    """Records as one-line JSON, characters, trailing spaces (JSON whitespace) to ``length``.
    ``layout`` "compact": ``json.dumps`` text; "slots": each value followed by spaces within its
    S3 slot budget, padded to the budget w.p. ``p_aligned`` (all fields), else a ragged uniform
    run per field (``corpora.render_json_slotted``), rows as long as the
    S3 scaffold of ``corpora.record_json_schema()``, so a model learns the pad convention that
    scaffolded decoding relies on (a compact-JSON model never saw a value followed by spaces);
    "null-pad": the same with the paper's layout (:func:`records_scaffold`), pads and trailing
    fill ``NULL_PAD``, JSON after ``corpora.strip_pads``. Why "null-pad" is the preset's: with
    "slots", a nullable slot's first character (``"`` or ``n``) decides string vs null and a
    small model can commit ``"`` and then pads and ``ull`` (docs/papers/29-s3.md)."""
    layout = spec.get("layout", "compact")
    recs = corpora.records(spec["n"] + 256, seed=seed, p_missing=spec.get("p_missing", 0.3))
    if layout == "compact":
        texts = [corpora.render_json(r) for r in recs]
        tok = Tokenizer.characters(sorted(set("".join(texts)) | {" "}))
        length = spec.get("length") or 8 * math.ceil(max(map(len, texts)) / 8)
    elif layout in ("slots", "null-pad"):
        null_pad = layout == "null-pad"
        pad = scaffold_options(layout)["pad"]
        tok = records_tokenizer(pad)
        scaffold = records_scaffold(tok, null_pad)
        budgets = {slot.path[-1]: slot.stop - slot.start for slot in scaffold.slots}
        gen = torch.Generator().manual_seed(derive_seed("json-layout", seed))
        p_aligned = float(spec.get("p_aligned", 0.5))
        texts = [
            corpora.render_json_slotted(r, budgets, gen, p_aligned, pad, null_pad) for r in recs
        ]
        length = spec.get("length") or scaffold.length
    else:
        raise UserError(
            f"json-records data.layout must be 'compact', 'slots' or 'null-pad', got {layout!r}"
        )
    pad = scaffold_options(layout).get("pad", " ")
    rows = tok.encode_batch(texts, length, pad=pad)  # trailing pads (spaces keep JSON valid)
    info = {"length": length, "layout": layout, "pad": pad}
    return TextData(rows[: spec["n"]], rows[spec["n"] :], tok, None, info)


#: The pad of the ``null-pad`` layout: a character no key or value of the records contains.
NULL_PAD = "~"


def scaffold_options(layout: str | None) -> dict[str, Any]:
    """``build_scaffold`` keywords of a json-records ``layout``: "null-pad" (the paper's: string
    quotes fixed, pads ``NULL_PAD``, null = an all-pad slot), "slots" (every slot a whole JSON
    value then spaces); none for other layouts or runs (S3's defaults)."""
    if layout == "null-pad":
        return {"pad": NULL_PAD, "quote_strings": True, "null_pad": True}
    if layout == "slots":
        return {"pad": " ", "quote_strings": False}
    return {}


def records_scaffold(tokenizer: Tokenizer, null_pad: bool) -> Scaffold:
    """The S3 scaffold of ``corpora.record_json_schema()`` in the "null-pad" or "slots" layout
    (:func:`scaffold_options`)."""
    layout = "null-pad" if null_pad else "slots"
    return build_scaffold(corpora.record_json_schema(), tokenizer, **scaffold_options(layout))


def records_tokenizer(pad: str = " ") -> Tokenizer:
    """Characters of every value ``corpora.records`` can produce in either JSON layout, plus
    ``pad``."""
    names = corpora.FIRST_SYLLABLES + corpora.LAST_SYLLABLES
    capitals = (n.capitalize() for n in corpora.FIRST_SYLLABLES)
    words = (*names, *capitals, *corpora.CITIES, *corpora.OCCUPATIONS)
    keys = "".join(json.dumps(k) for k in corpora.RECORD_SCHEMA)
    return Tokenizer.characters(sorted(set("".join(words) + keys + '{}":, 0123456789null' + pad)))


def build_model_and_objective(
    spec: dict[str, Any], vocab_size: int
) -> tuple[TextTransformer, TextObjective, DiscretePath | None]:
    """(model, objective, path) of a resolved spec for a vocabulary of ``vocab_size``."""
    kind = spec["loss"]
    model_spec = {"vocab_size": vocab_size, **spec["model"]}
    if kind == "ar":
        model_spec.pop("max_length", None)  # a causal model knows positions from its mask
        for key in ("neighbours", "time_conditioning"):
            if model_spec.get(key):
                raise UserError(f"model.{key} is an option of the diffusion models, not loss=ar")
            model_spec.pop(key, None)
        model = build_text_model({"kind": "causal", **model_spec})
        return model, TextObjective("ar", vocab_size), None
    path = DiscretePath(kind=kind, **spec["path"])
    model_spec.setdefault("time_conditioning", kind == "uniform")
    model = build_text_model({"kind": "diffusion", **model_spec})
    # The count form needs a time-agnostic denoiser; "time" is MDLM eq. 10 as written.
    default = "time" if model_spec["time_conditioning"] else "count-sqrt"
    estimator = spec.get("estimator", default)
    if estimator != "time" and model_spec["time_conditioning"]:
        raise UserError(
            f"estimator={estimator} needs a time-agnostic denoiser (model.time_conditioning)"
        )
    return model, TextObjective(kind, vocab_size, path, estimator), path


def train_text(
    preset: str,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path = "runs/text",
    eval_n_t: int = 8,
) -> TextRun:
    """Train the preset (with overrides) into ``run_dir`` (resuming if it holds checkpoints) and
    return the trained run. Rank 0 writes ``text.json`` (spec, tokenizer, model config) and, at
    the end, ``eval.json`` with the held-out NLL bound per token (and the exact entropy for the
    synthetic languages). Works unchanged under ``torchrun`` (DDP)."""
    spec = resolve(preset, overrides)
    cfg = TrainConfig.from_dict({**spec["train"], "run_dir": str(run_dir)})
    data = build_data(spec["data"], seed=cfg.seed)
    if spec["data"]["name"] == "file":
        spec["data"]["length"] = data.info["length"]  # resolved from the data: the context
        for part in ("train", "held_out"):
            if data.info[f"truncated_{part}"]:
                print(
                    f"truncated {data.info[f'truncated_{part}']} {part} sequence(s) to "
                    f"{data.info['length']} tokens (data.too_long=refuse refuses them instead)"
                )
    torch.manual_seed(derive_seed("init", cfg.seed))  # identical initial weights on every rank
    model, objective, _ = build_model_and_objective(spec, data.tokenizer.vocab_size)
    model_config = model.config()
    network = {"text_model": model_config, "objective": objective.config()}
    meta = {
        "spec": spec,
        "tokenizer": data.tokenizer.to_dict(),
        "model": model_config,
        "objective": objective.config(),
        "data": data.info,
    }
    _check_same_network(Path(run_dir) / TEXT_FILE, meta)
    limit = spec.get("time_limit_s")
    hook = None if limit is None else _time_limit(float(limit))
    trainer = Trainer(
        model, objective, data.train, cfg, network=network, data_info=data.info, step_hook=hook
    )
    if limit is not None and trainer.info.distributed:
        trainer.close()
        raise UserError("time_limit_s is for one process (ranks would stop at different steps)")
    try:
        if trainer.info.is_main:
            write_text_meta(run_dir, meta)
        trainer.run()
    finally:
        trainer.close()
    run = load_text_run(run_dir, device=str(trainer.info.device))
    if trainer.info.is_main:
        _evaluate(run, data, eval_n_t)
    return run


def _time_limit(limit_s: float) -> Any:
    """A step hook that stops the run (with a checkpoint) once its training time reaches
    limit_s."""

    def hook(trainer: Trainer, step: int) -> None:
        if step < trainer.config.steps and trainer.training_time_s >= limit_s:
            trainer.request_stop()

    return hook


def _check_same_network(meta_file: Path, meta: dict[str, Any]) -> None:
    """Refuse to reuse a run folder whose text.json describes another network or tokenizer
    (resuming would otherwise overwrite it before the trainer's own check fails)."""
    if not meta_file.is_file():
        return
    old = json.loads(meta_file.read_text())
    for key in ("model", "objective", "tokenizer"):
        if old.get(key) != meta[key]:
            raise UserError(
                f"{meta_file.parent} holds a text run with another {key} ({old.get(key)!r:.200}); "
                "choose a new run_dir"
            )


def _evaluate(run: TextRun, data: TextData, n_t: int) -> dict[str, Any]:
    """Held-out NLL bound per token, written to ``eval.json``."""
    return evaluate_text_run(run, data.held_out, n_t, data.info)


def evaluate_text_run(
    run: TextRun | str | Path,
    held_out: Tensor,
    n_t: int = 8,
    info: dict[str, Any] | None = None,
    max_rows: int = 512,
) -> dict[str, Any]:
    """The held-out NLL bound per token (:func:`~interpolant.text.losses.elbo_nll`; the exact
    NLL of an "ar" run) of the first ``max_rows`` rows, written to ``RUN_DIR/eval.json``."""
    run = load_text_run(run) if isinstance(run, str | Path) else run
    held = held_out[:max_rows].to(next(run.model.parameters()).device)
    nll = elbo_nll(run.model, held, run.path, n_t=n_t, seed=1)
    out: dict[str, Any] = {
        "step": run.step,
        "n_held_out": int(held.shape[0]),
        "nll_bound_per_token": float(nll.mean()),
        "nll_bound_stderr": float(nll.std() / math.sqrt(nll.numel())),
        **(info or {}),
    }
    ckpt.write_text_atomic(run.run_dir / "eval.json", json.dumps(out, indent=1) + "\n")
    return out


def text_run_meta(
    model: TextTransformer,
    objective: TextObjective,
    tokenizer: Tokenizer,
    length: int,
    pad: str | None = None,
    data_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``text.json`` holds for a model trained by hand (``Trainer`` + ``TextObjective``):
    pass it to :func:`write_text_meta` before ``Trainer.run()``; ``length`` is the trained row
    length (the context ``sample text`` uses), ``pad`` the symbol filling short rows."""
    path = None if objective.path is None else objective.path.config()
    spec = {
        "preset": None,
        "data": {"name": "custom", "length": int(length), "pad": pad},
        "model": {k: v for k, v in model.config().items() if k not in ("kind", "vocab_size")},
        "loss": objective.kind,
        "path": {k: v for k, v in (path or {}).items() if k in ("schedule", "eps")},
        "train": {},
    }
    return {
        "spec": spec,
        "tokenizer": tokenizer.to_dict(),
        "model": model.config(),
        "objective": objective.config(),
        "data": dict(data_info or {}),
    }


def write_text_meta(run_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write ``RUN_DIR/text.json`` (refusing a folder that holds another network), so
    :func:`load_text_run`, ``interpolant sample text`` and ``eval text`` read the run."""
    _check_same_network(Path(run_dir) / TEXT_FILE, meta)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    ckpt.write_text_atomic(Path(run_dir) / TEXT_FILE, json.dumps(meta, indent=1) + "\n")


def load_text_run(run_dir: str | Path, ema: bool = True, device: str = "cpu") -> TextRun:
    """The newest checkpoint of a text run: the model (EMA weights unless ``ema=False``) in eval
    mode, its tokenizer, its DiscretePath (None for "ar") and, for synthetic data, the language
    with its exact likelihood."""
    root = Path(run_dir)
    meta_file = root / TEXT_FILE
    if not meta_file.is_file():
        raise MissingFileError(f"{meta_file} not found: is {root} a text run (train_text)?")
    meta = json.loads(meta_file.read_text())
    found = ckpt.find_resume(root / "checkpoints", log=lambda message: None)
    if found is None:
        raise MissingFileError(f"no checkpoint in {root / 'checkpoints'} yet")
    state = json.loads((found / ckpt.STATE_FILE).read_text())
    spec = meta["spec"]
    tokenizer = Tokenizer.from_dict(meta["tokenizer"])
    model = build_text_model(meta["model"])
    path = None if spec["loss"] == "ar" else DiscretePath(kind=spec["loss"], **spec["path"])
    if meta.get("objective", {}).get("path"):  # the objective's own path (hand-built runs too)
        path = DiscretePath.from_config(meta["objective"]["path"])
    tensors = ckpt.read_tensors(found, "model")
    if ema and "ema.safetensors" in state.get("files", {}):
        tensors.update(ckpt.read_tensors(found, "ema"))
    model.load_state_dict(tensors)
    model = model.to(device).eval().requires_grad_(False)
    language = _language(spec["data"], int(state["config"]["seed"]))
    return TextRun(model, tokenizer, path, spec["loss"], spec, language, int(state["step"]), root)


def _language(data: dict[str, Any], seed: int) -> Any:
    """The synthetic language of a data section (None for real text)."""
    if data["name"] == "markov":
        from .markov import MarkovLanguage

        return MarkovLanguage.random(
            data["vocab_size"],
            data["length"],
            concentration=data["concentration"],
            order=int(data.get("order", 1)),
            seed=seed,
        )
    if data["name"] == "pcfg":
        from .pcfg import PCFGLanguage, toy_grammar

        return PCFGLanguage(toy_grammar(), data["length"])
    return None
