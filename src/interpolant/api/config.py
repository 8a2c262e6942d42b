"""Run configurations: four sections, named presets, config files and dotted overrides.

A run is described by four sections, each a typed dataclass::

    data:   DataConfig      what to train on (a registered set or the user's files)
    train:  TrainConfig     everything the trainer needs (interpolant.train.TrainConfig)
    sample: SampleConfig    how `interpolant sample` draws (solver, nfe, grid, n, seed)
    eval:   EvalConfig      which metrics `interpolant eval` computes

A config file (YAML, TOML or JSON) holds any of the sections, and may start from a preset with a
top-level ``preset: NAME``; a section's field given in the file replaces the preset's value whole
(a ``train.model`` mapping too). Dotted overrides (``train.lr=3e-4 sample.nfe=20
train.model.width=256``) come last; each value is parsed with the type of its dataclass field
(inside mapping fields such as ``train.model``, as a YAML/JSON scalar). Unknown keys are refused
with the list of valid ones: ``TrainConfig.from_dict`` checks the train section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configurable import option
from ..errors import MissingDependencyError, MissingFileError, UserError, WrongTypeError
from ..train.config import TrainConfig

SECTIONS = ("data", "train", "sample", "eval")
EVAL_METRICS = (
    "auto",
    "fd",
    "fid",
    "kid",
    "sliced_wasserstein",
    "mmd",
    "energy_distance",
    "precision_recall",
)


@dataclass
class DataConfig:
    """What to train on; ``interpolant eval`` compares samples with its held-out split."""

    name: str = option(
        "digits", help="a registered set (interpolant info) or a path: images, .npy/.npz, .csv"
    )
    n: int | None = option(
        None, help="training examples: draws of a sampled set (10000), else a random subset"
    )
    seed: int = option(0, help="seed of the draws and of the held-out split of the user's files")
    test_fraction: float = option(
        0.1, help="the user's files: share held out (stratified by label) for eval"
    )
    labels: bool = option(
        False, help="class-conditional: labels reach the model (num_classes is filled in)"
    )
    options: dict[str, Any] = option(default_factory=dict, help="loader keywords (see the how-to)")


@dataclass
class SampleConfig:
    """How samples are drawn from a trained run (``interpolant sample``)."""

    solver: str = option(
        "auto", help="a registered solver (see `interpolant info`; auto: the default rule)"
    )
    nfe: int = option(
        10, help="model evaluations per sample (the solver picks its number of steps)"
    )
    grid: list[float] | str = option(
        "auto",
        help="auto (the default rule), uniform, karras, logsnr, shift, calibrated (searched on "
        "this model, cached in the run), or times t_max..0",
    )
    n: int = option(1000, help="number of samples")
    seed: int = option(
        0, help="sample i starts from noise seeded by (seed, i): batch-size invariant"
    )
    batch_size: int = option(
        1000, help="samples per sampler call (memory only: results do not change)"
    )
    ema: bool = option(True, help="use the EMA weights (false: the raw trained weights)")
    class_label: int | None = option(
        None, help="conditional runs: the class of every sample (None: i % K)"
    )
    float64: bool = option(False, help="solver arithmetic in float64 whatever the model's dtype")
    grid_options: dict[str, Any] = option(default_factory=dict, help="e.g. {rho: 7} or {shift: 3}")
    solver_options: dict[str, Any] = option(
        default_factory=dict, help="e.g. {eps: 0.5} (sde_euler)"
    )
    teleport: float = option(
        0.0, help="share of the steps jumped along the data's Gaussian (seed 32)"
    )
    skip_plan: list[list[int]] = option(default_factory=list, help="blocks skipped per listed step")
    threshold: dict[str, Any] | str | None = option(
        None,
        help="clip or dynamic: x0_hat thresholded to [-1, 1] for pixel data, or "
        "{mode: dynamic, ratio: 0.995, max_value: 1} (None: off)",
    )


@dataclass
class EvalConfig:
    """Metrics of samples against the held-out split (``interpolant eval``)."""

    metrics: list[str] = option(default_factory=lambda: ["auto"], help="names, or auto (see below)")
    n_reference: int | None = option(
        None, help="held-out examples used (sampled sets: 2000; finite: all)"
    )
    seed: int = option(
        0, help="seed of the sliced-Wasserstein projections and of the reference draw"
    )
    inception: str | None = option(
        None,
        help="pytorch-fid Inception-v3 weights (pt_inception-2015-12-05-*.pth, never "
        "downloaded): adds FID and KID (images) and puts precision/recall in its features",
    )


SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
}


@dataclass
class RunConfig:
    """The four sections of a run. ``to_dict``/``from_dict`` round-trip through JSON."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str | None = None  # the preset it started from, for the record

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"preset": self.preset}
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = section.to_dict() if name == "train" else dataclasses.asdict(section)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from ``{"preset"?: ..., "data": {...}, "train": {...}, ...}``, refusing unknown
        sections and keys (naming the valid ones)."""
        if not isinstance(values, dict):
            raise WrongTypeError(f"a run config must be a mapping of sections, got {type(values)}")
        unknown = sorted(set(values) - {*SECTIONS, "preset"})
        if unknown:
            raise UserError(
                f"unknown config sections {unknown}; valid sections are {list(SECTIONS)}"
            )
        sections = {}
        for name in SECTIONS:
            body = values.get(name) or {}
            if not isinstance(body, dict):
                raise WrongTypeError(f"section {name!r} must be a mapping, got {body!r}")
            sections[name] = _build_section(name, body)
        return cls(**sections, preset=values.get("preset"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _build_section(name: str, body: dict[str, Any]) -> Any:
    """One section's dataclass from a dict; the train section through TrainConfig.from_dict."""
    if name == "train":
        try:
            train = TrainConfig.from_dict(dict(body))
        except (ValueError, TypeError) as err:
            raise type(err)(f"section 'train': {err}") from None
        _check_train_mappings(train)
        return train
    cls = SECTION_TYPES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise UserError(
            f"unknown keys {unknown} in section {name!r}; valid keys are {sorted(known)}"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _check_value(f"{name}.{k}", v, hints[k]) for k, v in body.items()}
    section = cls(**values)
    _validate(name, section)
    return section


def _validate(name: str, section: Any) -> None:
    """Value checks of the data, sample and eval sections."""
    if name == "sample":
        for key in ("nfe", "n", "batch_size"):
            if getattr(section, key) < 1:
                raise UserError(f"sample.{key} must be >= 1, got {getattr(section, key)}")
        if not isinstance(section.grid, str) and (
            len(section.grid) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in section.grid)
        ):
            raise UserError(
                f"sample.grid must be a grid name or a list of >= 2 times, got {section.grid!r}"
            )
        if section.skip_plan and (
            isinstance(section.grid, str) or len(section.skip_plan) != len(section.grid) - 1
        ):
            raise UserError(
                "sample.skip_plan needs a listed sample.grid with one entry per step "
                "(interpolant schedule --skip writes both)"
            )
        if not 0.0 <= section.teleport < 1.0:
            raise UserError(f"sample.teleport must lie in [0, 1), got {section.teleport}")
        _check_registered(section)
    if name == "data" and not 0 < section.test_fraction < 1:
        raise UserError(f"data.test_fraction must lie in (0, 1), got {section.test_fraction}")
    if name == "eval":
        bad = sorted(set(section.metrics) - set(EVAL_METRICS))
        if bad:
            raise UserError(f"unknown eval.metrics {bad}; choose from {list(EVAL_METRICS)}")


def _check_train_mappings(train: TrainConfig) -> None:
    """train.path names a registered path with its own options, and train.objective holds
    keywords of ``losses.Objective`` (train.model is checked against the backbone when the
    data fill in its sizes: ``api.runs.fit_model_to_data``)."""
    from ..configurable import option_names, refuse_unknown
    from ..paths import PATHS
    from ..train.structures import check_objective

    path = dict(train.path)
    if "name" not in path:
        raise UserError(f"train.path needs a name: one of {sorted(PATHS)}")
    cls = PATHS.resolve(path.pop("name"), key="train.path.name")
    refuse_unknown(cls.name, path, option_names(cls), key="train.path")
    check_objective(train)  # the structure (train.objective.name) and its options


def _check_registered(section: SampleConfig) -> None:
    """sample.solver and sample.grid name registered objects and their ``*_options`` are
    theirs: checked when the config is read (before any training), naming the dotted key."""
    from ..configurable import option_names, refuse_unknown
    from ..solvers import GRIDS, SOLVERS

    named: list[tuple[str, Any, Any, dict[str, Any]]] = [
        ("solver", SOLVERS, section.solver, section.solver_options)
    ]
    if isinstance(section.grid, str) and section.grid != "calibrated":  # searched at sample time
        named.append(("grid", GRIDS, section.grid, section.grid_options))
    for key, registry, name, options in named:
        cls = registry.resolve(name, key=f"sample.{key}")
        refuse_unknown(cls.name, options, option_names(cls), key=f"sample.{key}_options")
        try:
            registry.build(name, **options)
        except UserError as err:
            raise UserError(f"sample.{key}_options: {err}") from None


# ----------------------------------------------------------------------------------------------
# Values: type checks for file values, parsing for command-line strings.


def _union_args(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """``value`` (from a file or parsed) if it fits ``hint``, converted where lossless."""
    for kind in _union_args(hint):
        origin = typing.get_origin(kind) or kind
        if value is None and kind is type(None):
            return None
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, str):
            return value
        if origin in (list, tuple) and isinstance(value, list | tuple):
            return list(value) if origin is list else tuple(value)
        if origin is dict and isinstance(value, dict):
            return value
    raise WrongTypeError(f"{key} expects {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    """A short readable name of a type hint: ``float | None``, ``list[str]``, ``mapping``."""
    names = []
    for kind in _union_args(hint):
        origin = typing.get_origin(kind) or kind
        if kind is type(None):
            names.append("None")
        elif origin is dict:
            names.append("mapping")
        elif origin in (list, tuple):
            names.append(f"list of {_type_name(typing.get_args(kind)[0])}")
        else:
            names.append(getattr(origin, "__name__", str(origin)))
    return " | ".join(names)


_TRUE, _FALSE, _NONE = ("true", "yes", "on", "1"), ("false", "no", "off", "0"), ("none", "null")


def parse_scalar(text: str) -> Any:
    """A command-line value without a declared type: JSON/YAML-like (numbers, true/false, null,
    [lists], {mappings}), else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in _NONE:
        return None
    for parse in (int, float):
        with contextlib.suppress(ValueError):  # not this kind of number: try the next reading
            return parse(text)
    if text.strip()[:1] in "[{":
        return _parse_structured(text)
    return text


def _parse_structured(text: str) -> Any:
    """A list or mapping written as JSON, or as YAML flow style when pyyaml is installed."""
    with contextlib.suppress(json.JSONDecodeError):  # not JSON: try YAML flow style below
        return json.loads(text)
    try:
        import yaml
    except ImportError:
        raise UserError(f"cannot parse {text!r} as JSON (install pyyaml for YAML)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"cannot parse {text!r}: {' '.join(str(err).split())}") from None


def parse_value(key: str, text: str, hint: Any) -> Any:
    """Parse the command-line string ``text`` for the field ``key`` of type ``hint``."""
    low = text.strip().lower()
    kinds = _union_args(hint)
    if low in _NONE and type(None) in kinds:
        return None
    detail = ""
    for kind in kinds:
        origin = typing.get_origin(kind) or kind
        try:
            if origin is bool:
                if low in _TRUE or low in _FALSE:
                    return low in _TRUE
                raise UserError("not a boolean (true/false)")
            if origin is int:
                return int(text)
            if origin is float:
                return float(text)
            if origin is str:
                return text
            if origin in (list, tuple):
                item = typing.get_args(kind)[0] if typing.get_args(kind) else Any
                raw = _parse_structured(text) if low[:1] == "[" else text.split(",")
                items = [parse_value(key, str(v), item) if item is not Any else v for v in raw]
                return items if origin is list else tuple(items)
            if origin is dict:
                value = _parse_structured(text)
                if isinstance(value, dict):
                    return value
                raise UserError("not a mapping")
            if kind is Any:
                return parse_scalar(text)
        except (ValueError, TypeError) as err:
            if str(err).startswith("cannot parse"):  # a malformed list or mapping: say why
                detail = f" ({err})"
    raise UserError(f"{key} expects {_type_name(hint)}, got {text!r}{detail}")


# ----------------------------------------------------------------------------------------------
# Overrides.


def split_override(item: str) -> tuple[list[str], str]:
    """``"train.model.width=256"`` -> (["train", "model", "width"], "256")."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise UserError(
            f"override {item!r} must look like SECTION.KEY=VALUE (sections: {', '.join(SECTIONS)})"
        )
    return parts, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the config dict ``values`` with dotted ``overrides`` applied, each value parsed
    with the type of its field (a key unknown to a section is kept as text, so that building the
    section names the valid keys)."""
    out = json.loads(json.dumps(values))  # deep copy of plain data
    for item in overrides:
        parts, text = split_override(item)
        section = parts[0]
        if section not in SECTIONS:
            raise UserError(
                f"unknown config section {section!r} in {item!r}; valid sections are "
                f"{list(SECTIONS)}"
            )
        body = out.setdefault(section, {}) or {}
        out[section] = body
        hints = typing.get_type_hints(SECTION_TYPES[section])
        key = parts[1]
        if len(parts) == 2:
            body[key] = parse_value(f"{section}.{key}", text, hints[key]) if key in hints else text
            continue
        # A key inside a mapping field (train.model.width=256): no declared type.
        if key in hints and dict not in {
            typing.get_origin(k) or k for k in _union_args(hints[key])
        }:
            raise UserError(f"{section}.{key} is not a mapping, so {item!r} cannot set a key in it")
        target = body.setdefault(key, {})
        for name in parts[2:-1]:
            if not isinstance(target.get(name, {}), dict):
                raise UserError(f"{'.'.join(parts[:-1])} is not a mapping in {item!r}")
            target = target.setdefault(name, {})
        target[parts[-1]] = parse_scalar(text)
    return out


# ----------------------------------------------------------------------------------------------
# Files and presets.


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as a dict: ``.yaml``/``.yml`` (pyyaml), ``.toml`` (tomllib) or ``.json``."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"config file {str(path)!r} does not exist")
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{p}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise MissingDependencyError(
                "YAML configs need pyyaml: pip install 'interpolant[all]' (or use .toml/.json)"
            ) from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problem = getattr(err, "problem", None) or str(err)
            raise _syntax_error(
                p, mark.line + 1 if mark else None, mark and mark.column + 1, problem
            ) from None
    elif suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise MissingDependencyError(
                "TOML configs need Python >= 3.11 (or use .yaml/.json)"
            ) from None
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            line, column = _toml_position(str(err))
            raise _syntax_error(p, line, column, str(err).split(" (at ")[0]) from None
    elif suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise _syntax_error(p, err.lineno, err.colno, err.msg) from None
    else:
        raise UserError(f"config file {p.name!r} must end in .yaml, .yml, .toml or .json")
    if not isinstance(values, dict):
        raise UserError(f"{p}: a config file must hold a mapping of sections")
    return values


def _syntax_error(path: Path, line: int | None, column: int | None, problem: str) -> UserError:
    """One line: ``FILE:LINE:COLUMN: syntax error: PROBLEM`` (the compiler convention)."""
    where = f"{path}:{line}:{column}" if line is not None else str(path)
    return UserError(f"{where}: syntax error in the {path.suffix[1:].upper()} config: {problem}")


def _toml_position(message: str) -> tuple[int | None, int | None]:
    """(line, column) of tomllib's "... (at line L, column C)" (None where it gives none)."""
    import re

    found = re.search(r"at line (\d+), column (\d+)", message)
    return (int(found.group(1)), int(found.group(2))) if found else (None, None)


def merge_sections(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top``'s fields replace ``base``'s, section by section (a mapping field whole)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in top.items():
        if key in SECTIONS and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


def resolve_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """The run config of a preset and/or a config file (whose ``preset:`` key names its base),
    then the dotted overrides."""
    from .presets import get_preset

    values: dict[str, Any] = {}
    file_values = read_config_file(config_file) if config_file is not None else {}
    base = preset or file_values.get("preset")
    if preset and file_values.get("preset") not in (None, preset):
        raise UserError(
            f"--preset {preset!r} and the config file's preset {file_values['preset']!r} differ"
        )
    if base:
        values = {**get_preset(base), "preset": base}
    values = merge_sections(values, file_values)
    return RunConfig.from_dict(apply_overrides(values, list(overrides)))


# ----------------------------------------------------------------------------------------------
# Help text from the field metadata (``configurable.option``: help and group of every field).


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def config_help(sections: tuple[str, ...] = SECTIONS, width: int = 100) -> str:
    """Every config key with its type, default and description, section by section (from the
    dataclasses' docstrings and their fields' metadata)."""
    lines = []
    for name in sections:
        cls = SECTION_TYPES[name]
        hints = typing.get_type_hints(cls)
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        lines += ["", f"[{name}]  {doc}"]
        group = ""
        for f in dataclasses.fields(cls):
            text, field_group = f.metadata.get("help", ""), f.metadata.get("group", "")
            if field_group and field_group != group:
                group = field_group
                lines.append(f"  # {group}")
            default = json.dumps(_default(f))
            head = f"  {name}.{f.name} ({_type_name(hints[f.name])}, default {default})"
            if text and len(head) + 2 + len(text) <= width:
                lines.append(f"{head}: {text}")
            else:
                lines.append(head + (":" if text else ""))
                if text:
                    lines.append(f"      {text}")
    return "\n".join(lines).lstrip("\n")


def dump_config(config: RunConfig, fmt: str = "yaml") -> str:
    """The config as YAML (when pyyaml is installed and ``fmt="yaml"``) or JSON text."""
    values = config.to_dict()
    if fmt == "yaml":
        with contextlib.suppress(ImportError):  # without pyyaml the config is written as JSON
            import yaml

            return str(yaml.safe_dump(values, sort_keys=False, default_flow_style=None))
    return json.dumps(values, indent=2)


__all__ = [
    "EVAL_METRICS",
    "SECTIONS",
    "DataConfig",
    "EvalConfig",
    "RunConfig",
    "SampleConfig",
    "apply_overrides",
    "config_help",
    "dump_config",
    "merge_sections",
    "parse_scalar",
    "parse_value",
    "read_config_file",
    "resolve_config",
]
