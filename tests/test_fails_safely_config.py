"""Config mistakes are one-line errors naming the dotted key and the valid choices, syntax
errors in config files give file, line and column (issue 19, Deliver 4)."""

from __future__ import annotations

import pytest

from interpolant.api import resolve_config
from interpolant.api.config import DataConfig
from interpolant.api.runs import fit_model_to_data, load_data
from interpolant.cli.main import main
from interpolant.errors import UserError
from interpolant.scaling.rewards import reward_from_spec


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interpolant: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "sample.solver_options.orderr=2",
            r"sample\.solver_options\.orderr: heun has no option "
            r"'orderr'; its options are \['s_churn', 's_noise', 's_tmax', 's_tmin'\]",
        ),
        ("sample.solver=hune", r"sample\.solver: unknown solver 'hune'; choose one of \[.*'heun'"),
        ("sample.grid_options.rhoo=7", r"sample\.grid_options\.rhoo: uniform has no option"),
        ("sample.solver_options.s_churn=-1", r"sample\.solver_options: Heun: s_churn must be"),
        ("train.path.name=lineer", r"train\.path\.name: unknown path 'lineer'; choose one of \["),
        ("train.path.sigmaa=2", r"train\.path\.sigmaa: linear has no option 'sigmaa'"),
        (
            "train.objective.weigth=snr",
            r"train\.objective\.weigth: the objective has no option 'weigth'; its options are \[.*"
            r"'weight'",
        ),
    ],
)
def test_nested_keys_of_solvers_grids_paths_objectives_are_named(override, expected):
    with pytest.raises(UserError, match=expected):
        resolve_config("toy2d-flow", overrides=[override])


def test_a_misspelled_model_key_names_the_dotted_key_and_the_backbone_options():
    spec = resolve_config("toy2d-flow", overrides=["train.model.widht=64"]).train.model
    with pytest.raises(
        UserError,
        match=r"train\.model\.widht: mlp has no option 'widht'; its "
        r"options are \[.*'depth', 'dim'.*'width'\]",
    ):
        fit_model_to_data(spec, (2,))


@pytest.mark.parametrize(
    "name, expected",
    [("moons", r"\['noise'\]"), ("ring2d", r"\['n_modes', 'radius', 'std'\]")],
)
def test_a_misspelled_data_option_names_the_dotted_key_and_the_loader_options(name, expected):
    with pytest.raises(
        UserError,
        match=rf"data\.options\.normalise: '{name}' has no option "
        rf"'normalise'; its options are {expected}",
    ):
        load_data(DataConfig(name=name, options={"normalise": "std"}), "train", n=10)


def test_a_misspelled_option_of_a_user_file_lists_the_loader_options(tmp_path):
    import numpy as np

    file = tmp_path / "x.npy"
    np.save(file, np.zeros((20, 3), dtype=np.float32))
    with pytest.raises(
        UserError,
        match=r"data\.options\.normalise: .* its options are \[.*"
        r"'normalize'",
    ):
        load_data(DataConfig(name=str(file), options={"normalise": "std"}))


def test_the_command_line_prints_a_misspelled_model_key_as_one_line(capsys, tmp_path):
    line = _one_line_error(
        capsys,
        [
            "--threads",
            "1",
            "train",
            "--preset",
            "toy2d-flow",
            "train.model.widht=3",
            f"train.run_dir={tmp_path / 'run'}",
        ],
    )
    assert "train.model.widht: mlp has no option 'widht'" in line
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "suffix, text, where, problem",
    [
        (".yaml", "train:\n  lr: 1\n   steps: 3\n", ":3:9:", "mapping values are not allowed"),
        (".yaml", "train:\n  lr: [1\n", ":3:1:", "expected ',' or ']'"),
        (".toml", "[train\nlr = 1\n", ":1:7:", "Expected ']'"),
        (".json", '{"train": {"lr": 1,}}', ":1:20:", "Expecting property name"),
    ],
)
def test_config_file_syntax_errors_give_file_line_and_column(
    capsys, tmp_path, suffix, text, where, problem
):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    line = _one_line_error(capsys, ["train", "-c", str(path)])
    assert f"{path}{where} syntax error in the {suffix[1:].upper()} config: {problem}" in line


def test_an_unknown_reward_kind_lists_the_built_in_kinds():
    with pytest.raises(
        UserError,
        match=r"unknown reward kind 'linaer': the built-in kinds are "
        r"linear, quadratic, classifier, component",
    ):
        reward_from_spec("linaer:1,0")


def test_an_unknown_guidance_lists_the_valid_ones():
    from interpolant.guidance.spec import from_spec

    with pytest.raises(UserError, match=r"unknown guidance 'cgf'.*choose one of .*'cfg'"):
        from_spec("cgf:2.0", model=None)
