"""Run configs: presets, config files, dotted overrides parsed with the fields' types, help."""

from __future__ import annotations

import dataclasses
import json

import pytest

from interpolant.api import PRESETS, RunConfig, config_help, resolve_config
from interpolant.api.config import SECTION_TYPES, apply_overrides, parse_scalar
from interpolant.train import TrainConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_and_round_trips_through_json(name):
    cfg = resolve_config(name)
    assert cfg.preset == name and cfg.train.model["name"]
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_presets_say_what_they_train():
    assert resolve_config("digits-flow").train.objective["time"] == "logit-normal"
    edm = resolve_config("digits-edm").train
    assert (edm.path["name"], edm.predicts, edm.precondition) == ("edm", "x0", 0.75)
    assert resolve_config("toy2d-flow").data.name == "moons"
    dit = resolve_config("dit-s2")
    assert dit.train.model["name"] == "dit-s/2" and dit.train.precision == "bf16"


def test_overrides_are_parsed_with_the_field_types():
    cfg = resolve_config(
        "toy2d-flow",
        overrides=[
            "train.lr=3e-4",
            "sample.nfe=20",
            "train.grad_clip=none",
            "train.betas=0.9,0.95",
            "data.labels=true",
            "train.batch_per_gpu=64",
            "eval.metrics=mmd,energy_distance",
            "train.model.width=128",
            "train.objective.time={name: logit-normal, m: 0.5, s: 1.0}",
            "sample.grid=shift",  # grid options are checked against the grid they belong to
            'sample.grid_options={"shift": 3}',
        ],
    )
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.sample.nfe == 20 and isinstance(cfg.sample.nfe, int)
    assert cfg.train.grad_clip is None
    assert cfg.train.betas == (0.9, 0.95)
    assert cfg.data.labels is True
    assert cfg.train.batch_per_gpu == 64
    assert cfg.eval.metrics == ["mmd", "energy_distance"]
    assert cfg.train.model == {"name": "mlp", "width": 128, "depth": 3}
    assert cfg.train.objective["time"] == {"name": "logit-normal", "m": 0.5, "s": 1.0}
    assert cfg.sample.grid_options == {"shift": 3}


def test_a_value_of_the_wrong_type_names_the_key_and_the_type():
    with pytest.raises(ValueError, match=r"sample\.nfe expects int, got 'ten'"):
        resolve_config("toy2d-flow", overrides=["sample.nfe=ten"])
    with pytest.raises(ValueError, match=r"train\.resume expects bool"):
        resolve_config("toy2d-flow", overrides=["train.resume=maybe"])


def test_unknown_keys_sections_and_presets_name_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown config keys \['lrr'\].*'lr'"):
        resolve_config("toy2d-flow", overrides=["train.lrr=1e-3"])
    with pytest.raises(ValueError, match=r"unknown keys \['nfes'\] in section 'sample'.*'nfe'"):
        resolve_config("toy2d-flow", overrides=["sample.nfes=3"])
    with pytest.raises(ValueError, match=r"unknown config section 'trian'.*'train'"):
        resolve_config("toy2d-flow", overrides=["trian.lr=1"])
    with pytest.raises(ValueError, match=r"unknown preset 'digit-flow'.*'digits-flow'"):
        resolve_config("digit-flow")
    with pytest.raises(ValueError, match=r"SECTION\.KEY=VALUE"):
        resolve_config("toy2d-flow", overrides=["lr=3"])
    with pytest.raises(ValueError, match="lr_schedule must be one of"):  # TrainConfig's check
        resolve_config("toy2d-flow", overrides=["train.lr_schedule=linear"])


def test_a_key_inside_a_non_mapping_field_is_refused():
    with pytest.raises(ValueError, match=r"train\.lr is not a mapping"):
        apply_overrides({}, ["train.lr.x=1"])


def test_yaml_file_starts_from_its_preset_and_replaces_fields_whole(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "preset: toy2d-flow\n"
        "data: {name: checkerboard}\n"
        "train:\n  model: {name: mlp, width: 64}\n  steps: 10\n"
    )
    cfg = resolve_config(config_file=path, overrides=["train.steps=20"])
    assert cfg.preset == "toy2d-flow" and cfg.data.name == "checkerboard"
    assert cfg.sample.nfe == 20 and cfg.data.seed == 0  # kept from the preset
    assert cfg.train.model == {"name": "mlp", "width": 64}  # the mapping replaced whole
    assert cfg.train.steps == 20 and cfg.train.lr == 2e-3
    with pytest.raises(ValueError, match="differ"):
        resolve_config("digits-flow", path)


def test_toml_and_json_files(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[data]\nname = "moons"\n[train]\nsteps = 7\nmodel = {name = "mlp"}\n')
    cfg = resolve_config(config_file=toml)
    assert (cfg.data.name, cfg.train.steps, cfg.preset) == ("moons", 7, None)
    js = tmp_path / "run.json"
    js.write_text(resolve_config("digits-edm").to_json())
    assert resolve_config(config_file=js) == resolve_config("digits-edm")
    bad = tmp_path / "run.ini"
    bad.write_text("")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml, \.toml or \.json"):
        resolve_config(config_file=bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_config(config_file=tmp_path / "missing.yaml")


def test_help_lists_every_key_of_every_section_with_its_help_text():
    text = config_help()
    for section, cls in SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            assert f"  {section}.{f.name} (" in text
            assert f.metadata.get("help"), f"{section}.{f.name} has no help in its metadata"
    assert "train.grad_clip (float | None, default 1.0" in text
    assert "max global grad norm" in text  # TrainConfig's own comment
    assert "one of constant, cosine, inverse_sqrt" in text  # from TrainConfig's constants
    assert "# Optimiser (AdamW) and learning rate" in text
    assert "sample.nfe (int, default 10): model evaluations per sample" in text
    assert len(TrainConfig.__dataclass_fields__) == text.count("\n  train.")


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("3e-4", 3e-4), ("true", True), ("null", None), ("[1, 2]", [1, 2]), ("a-b", "a-b")],
)
def test_untyped_values_parse_like_yaml_scalars(text, value):
    assert parse_scalar(text) == value


def test_user_errors_are_one_line_and_bugs_show_a_traceback(monkeypatch, capsys):
    import importlib

    cli = importlib.import_module("interpolant.cli.main")
    from interpolant.errors import UserError

    def user_mistake(args):
        raise UserError("sample.nfe must be >= 1, got 0")

    def bug(args):
        raise KeyError("an internal lookup that should never fail")

    monkeypatch.setitem(cli.COMMANDS, "info", user_mistake)
    assert cli.main(["info"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "interpolant: error: sample.nfe must be >= 1, got 0\n"
    monkeypatch.setitem(cli.COMMANDS, "info", bug)
    assert cli.main(["info"]) == cli.EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert err.rstrip().endswith(cli.BUG_NOTE)
    with pytest.raises(KeyError):
        cli.main(["--traceback", "info"])


def test_info_options_prints_each_option_from_its_field_metadata(capsys):
    from interpolant.cli import main
    from interpolant.solvers.unipc import UniPC

    assert main(["info", "--options", "solver", "unipc"]) == 0
    out = capsys.readouterr().out
    for option, _, _default, text in UniPC.options():
        assert f"  {option} (" in out and text in out
    assert "max_step_ratio (float | None, default null)" in out
    assert main(["info", "--options", "solver", "rk45"]) == 2
    assert "unknown solver 'rk45'" in capsys.readouterr().err
