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
json-records   biographical records as one-line JSON (``corpora.records``), characters, in
               the paper's S3 slot layout ("null-pad": string quotes fixed, values followed
               by "~" pads inside them, null = an all-pad slot) with absolute positions;
               ~3 minutes on one thread (seed 29)
=============  ==========================================================================

Overrides are dotted keys: ``{"steps": 200, "model.dim": 64, "data.n": 5000, "loss": "uniform"}``
(a key without a section is a :class:`~interpolant.train.TrainConfig` field). ``loss`` is "mask"
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
from .losses import TextObjective, elbo_nll
from .models import TextTransformer, build_text_model
from .s3 import Scaffold, build_scaffold
from .tokenize import Tokenizer

TEXT_FILE = "text.json"
_TRAIN = {"ema": "halflife", "ema_halflife_kimg": 2.0, "log_every": 50, "grad_clip": 1.0}

PRESETS: dict[str, dict[str, Any]] = {
    "markov-char": {
        "data": {"name": "markov", "vocab_size": 8, "length": 32, "concentration": 0.3, "n": 20000},
        "model": {"dim": 64, "depth": 2, "heads": 4},
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
        "model": {"dim": 96, "depth": 3, "heads": 4},
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
    """The preset's spec with dotted ``overrides`` applied (unknown keys are refused)."""
    if preset not in PRESETS:
        raise UserError(f"unknown text preset {preset!r}; choose one of {sorted(PRESETS)}")
    spec = copy.deepcopy(PRESETS[preset])
    spec["preset"] = preset
    train_keys = {f.name for f in fields(TrainConfig)}
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        if key == "loss":
            if value not in ("mask", "uniform", "ar"):
                raise UserError(f"loss must be 'mask', 'uniform' or 'ar', got {value!r}")
            spec["loss"] = value
        elif not section and name in train_keys:
            spec["train"][name] = _coerce(value, spec["train"].get(name))
        elif section in SECTIONS:
            if section == "train" and name not in train_keys:
                raise UserError(f"train.{name} is not a TrainConfig field")
            spec[section][name] = _coerce(value, spec[section].get(name))
        else:
            raise UserError(
                f"unknown override {key!r}: use 'loss', a TrainConfig field or "
                f"'<section>.<key>' with a section in {SECTIONS}"
            )
    return spec


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
        from .markov import MarkovLanguage

        n = spec.pop("n")
        lang = MarkovLanguage.random(
            spec["vocab_size"], spec["length"], concentration=spec["concentration"], seed=seed
        )
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
        model = build_text_model({"kind": "causal", **model_spec})
        return model, TextObjective("ar", vocab_size), None
    path = DiscretePath(kind=kind, **spec["path"])
    model_spec.setdefault("time_conditioning", kind == "uniform")
    model = build_text_model({"kind": "diffusion", **model_spec})
    return model, TextObjective(kind, vocab_size, path), path


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
    trainer = Trainer(model, objective, data.train, cfg, network=network, data_info=data.info)
    try:
        if trainer.info.is_main:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            ckpt.write_text_atomic(Path(run_dir) / TEXT_FILE, json.dumps(meta, indent=1) + "\n")
        trainer.run()
    finally:
        trainer.close()
    run = load_text_run(run_dir, device=str(trainer.info.device))
    if trainer.info.is_main:
        _evaluate(run, data, eval_n_t)
    return run


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
    held = data.held_out[:512].to(next(run.model.parameters()).device)
    nll = elbo_nll(run.model, held, run.path, n_t=n_t, seed=1)
    out: dict[str, Any] = {
        "step": run.step,
        "n_held_out": int(held.shape[0]),
        "nll_bound_per_token": float(nll.mean()),
        "nll_bound_stderr": float(nll.std() / math.sqrt(nll.numel())),
        **data.info,
    }
    ckpt.write_text_atomic(run.run_dir / "eval.json", json.dumps(out, indent=1) + "\n")
    return out


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
            data["vocab_size"], data["length"], concentration=data["concentration"], seed=seed
        )
    if data["name"] == "pcfg":
        from .pcfg import PCFGLanguage, toy_grammar

        return PCFGLanguage(toy_grammar(), data["length"])
    return None
