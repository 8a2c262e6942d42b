"""The command line end to end (train -> sample -> eval on toy 2-D data), info, repro --list,
and the one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interpolant.cli import main

TINY = [
    "data.n=2000",
    "train.steps=150",
    "train.batch_size=256",
    "train.model.width=64",
    "train.model.depth=2",
    "train.log_every=50",
    "train.checkpoint_every=100",
    "train.ema_halflife_kimg=5",
    "train.progress=false",
    "train.device=cpu",
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A tiny toy2d-flow run trained through the command line."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    torch.set_num_threads(1)
    code = main(["train", "--preset", "toy2d-flow", "--run-dir", str(run_dir), *TINY])
    assert code == 0
    return run_dir


def test_train_writes_the_run_folder(toy_run, capsys):
    assert {p.name for p in toy_run.iterdir()} >= {
        "checkpoints",
        "stats.jsonl",
        "config.json",
        "run_config.json",
        "loss_curve.png",
        "log.txt",
    }
    steps = [json.loads(r)["step"] for r in (toy_run / "stats.jsonl").read_text().splitlines()]
    assert steps == [50, 100, 150]
    saved = json.loads((toy_run / "run_config.json").read_text())
    assert saved["preset"] == "toy2d-flow"
    assert saved["train"]["model"] == {"name": "mlp", "width": 64, "depth": 2, "dim": 2}
    # Training again with the same config resumes the finished run: no new steps.
    assert main(["train", "--preset", "toy2d-flow", "--run-dir", str(toy_run), *TINY]) == 0
    assert "trained 150 of 150 steps" in capsys.readouterr().out


def test_sample_then_eval(toy_run, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sample", str(toy_run), "--nfe", "8", "-n", "300", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    with np.load(out / "samples.npz") as z:
        x = z["samples"]
        meta = json.loads(str(z["meta"]))
    assert x.shape == (300, 2) and np.isfinite(x).all()
    assert meta["sample"]["nfe"] == 8 and meta["sample"]["solver"] == "heun" and meta["ema"]
    assert (out / "samples.png").stat().st_size > 0
    # Batch size changes nothing: sample i has its own noise.
    again = tmp_path / "s2"
    assert main([*args[:-3], "--out", str(again), "--batch-size", "70", "--no-progress"]) == 0
    with np.load(again / "samples.npz") as z:
        np.testing.assert_allclose(z["samples"], x, rtol=0, atol=1e-5)

    # The kept paths run from the source (t = 1) to the samples, one state per grid time.
    paths = tmp_path / "paths"
    assert main([*args[:-3], "--out", str(paths), "--trajectories", "--no-progress"]) == 0
    with np.load(paths / "samples.npz") as z:
        trajectory = z["trajectory"]
    assert trajectory.shape == (5, 300, 2)  # heun, 8 NFE: 4 steps
    np.testing.assert_allclose(trajectory[-1], x, rtol=0, atol=1e-6)
    assert abs(trajectory[0].std() - 1.0) < 0.1  # sigma(1) = 1 times standard noise
    assert (paths / "trajectories.png").is_file()

    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "metrics.json").read_text())
    metrics = result["metrics"]
    assert set(metrics) == {
        "sliced_wasserstein",
        "mmd",
        "energy_distance",
        "precision",
        "recall",
        "mmd_stderr",
        "energy_distance_stderr",  # unbiased estimates come with their error
    }
    assert "sliced_wasserstein" in printed and result["data"] == "moons"
    # The trained model is much closer to the moons than its own source noise is.
    noise = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "noise.npz", samples=noise.numpy())
    assert main(["eval", str(tmp_path / "noise.npz"), "--data", "moons"]) == 0
    baseline = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["sliced_wasserstein"] < 0.5 * baseline["sliced_wasserstein"]
    assert metrics["energy_distance"] < 0.5 * baseline["energy_distance"]


def test_sample_teleport_jumps_over_the_first_steps(toy_run, tmp_path, capsys):
    # --teleport F replaces round(F * steps) steps by the Gaussian's closed-form flow: the kept
    # path starts later, and the samples equal teleport_sample's on the same per-sample noise.
    from interpolant.api.runs import load_data, load_run, start_noise
    from interpolant.data.oracles import fit_gaussian
    from interpolant.solvers import teleport_sample

    out = tmp_path / "t"
    args = ["sample", str(toy_run), "--nfe", "8", "-n", "40", "--no-progress", "--trajectories"]
    assert main([*args, "--teleport", "0.5", "--out", str(out)]) == 0
    assert "first 0.5 of the steps teleported" in capsys.readouterr().out
    with np.load(out / "samples.npz") as z:
        x, trajectory = z["samples"], z["trajectory"]
        assert json.loads(str(z["meta"]))["sample"]["teleport"] == 0.5
    assert trajectory.shape == (3, 40, 2)  # heun, 8 NFE: 4 steps, 2 of them teleported

    run = load_run(toy_run)
    gaussian = fit_gaussian(load_data(run.config.data, "train").x)
    noise = start_noise((2,), 0, range(40))
    expected = teleport_sample(
        run.model, noise, gaussian, skip=2, steps=4, solver="heun", grid="uniform", seed=0
    ).x
    np.testing.assert_allclose(x, expected.detach().numpy(), rtol=0, atol=1e-5)

    # Teleporting 0 steps is plain sampling; F outside [0, 1) is refused.
    plain, zero = tmp_path / "p", tmp_path / "z"
    assert main([*args[:-1], "--out", str(plain)]) == 0
    assert main([*args[:-1], "--teleport", "0", "--out", str(zero)]) == 0
    with np.load(plain / "samples.npz") as a, np.load(zero / "samples.npz") as b:
        np.testing.assert_array_equal(a["samples"], b["samples"])
        assert not np.allclose(a["samples"], x, atol=1e-3)
    capsys.readouterr()
    assert main([*args, "--teleport", "1.0", "--out", str(out)]) == 2
    assert "sample.teleport must lie in [0, 1)" in capsys.readouterr().err


def test_sample_threshold_plugin_keeps_samples_inside_the_range(toy_run, tmp_path, capsys):
    # sample.threshold clips x0_hat at every evaluation: the samples of the moons run (which
    # reach |x| ~ 2) end inside [-0.5, 0.5] with clip_range 0.5; a bad key names the valid ones.
    args = ["sample", str(toy_run), "--nfe", "8", "-n", "40", "--no-progress"]
    out = tmp_path / "clip"
    assert main([*args, "--out", str(out), "sample.threshold={mode: clip, clip_range: 0.5}"]) == 0
    with np.load(out / "samples.npz") as z:
        assert float(np.abs(z["samples"]).max()) <= 0.5 + 1e-6
    plain = tmp_path / "plain"
    assert main([*args, "--out", str(plain)]) == 0
    with np.load(plain / "samples.npz") as z:
        assert float(np.abs(z["samples"]).max()) > 1.0
    capsys.readouterr()
    assert main([*args, "--out", str(out), "sample.threshold={mode: clip, range: 0.5}"]) == 2
    assert "mode, ratio, max_value, clip_range" in capsys.readouterr().err


def test_schedule_writes_a_grid_file_that_sample_reads(toy_run, tmp_path, capsys):
    # `schedule` searches a 3-step DDIM grid (never worse than uniform on its own seeds, which
    # are in its first population); `sample --grid FILE` samples on exactly the listed times.
    grid_file = tmp_path / "g.json"
    search = ["schedule", str(toy_run), "--steps", "3", "--population", "8", "--epochs", "3"]
    assert main([*search, "--samples", "128", "--fitness", "sw", "--out", str(grid_file)]) == 0
    record = json.loads(grid_file.read_text())
    grid = record["grid"]
    assert len(grid) == 4 and grid[0] == 1.0 and grid[-1] == 0.0
    assert grid == sorted(grid, reverse=True) and len(set(grid)) == 4
    assert record["fitness_searched"] <= record["fitness_uniform"]
    assert "sample with: interpolant sample" in capsys.readouterr().out

    def draw(*extra: str) -> np.ndarray:
        out = tmp_path / f"s{len(list(tmp_path.iterdir()))}"
        argv = ["sample", str(toy_run), "--solver", "ddim", "-n", "64", "--no-progress"]
        assert main([*argv, "--out", str(out), *extra]) == 0
        with np.load(out / "samples.npz") as z:
            return z["samples"]

    uniform_file = tmp_path / "uniform.json"
    uniform_file.write_text(json.dumps([1.0, 2 / 3, 1 / 3, 0.0]))
    np.testing.assert_allclose(
        draw("--grid", str(uniform_file)), draw("--grid", "uniform", "--nfe", "3"), atol=1e-6
    )
    searched = draw("--grid", str(grid_file))
    np.testing.assert_array_equal(searched, draw(f"sample.grid={json.dumps(grid)}"))
    assert "3 listed steps" in capsys.readouterr().out

    _error(["sample", str(toy_run), "--grid", str(tmp_path / "none.json")], capsys)
    assert "list of >= 2 times" in _error(["sample", str(toy_run), "sample.grid=[1.0]"], capsys)


def test_info_lists_the_registries(capsys):
    assert main(["info", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert {"heun", "euler", "dpmpp_2m"} <= set(values["solvers"])
    assert {"linear", "edm", "vp"} <= set(values["paths"])
    assert {"mlp", "unet", "dit-s/2"} <= set(values["models"])
    assert {"digits", "moons"} <= set(values["datasets"])
    assert {"karras", "uniform"} <= set(values["grids"])
    assert set(values["presets"]) == {
        "digits-flow",
        "digits-edm",
        "toy2d-flow",
        "toy2d-edm",
        "dit-s2",
        "multitask",
        "diffusevae",
        "forward-digits",
        "series-co2",
        "series-elnino",
        "series-sunspots",
        "series-nile",
        "series-csv",
    }
    assert "seed30_logitnormal" in values["reproductions"]
    assert main(["info"]) == 0
    assert "solvers:" in capsys.readouterr().out


def test_repro_list_shows_every_reproduction_with_its_paper(capsys):
    from interpolant.repro import list_repros

    assert main(["repro", "--list"]) == 0
    out = capsys.readouterr().out
    for name, r in list_repros().items():
        assert name in out and f"seed paper {r.paper:>2}: {r.title}" in out


def test_help_documents_every_option(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "train.ema_halflife_kimg" in text and "sample.solver" in text and "digits-flow" in text


def _error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("interpolant: error: ") and "Traceback" not in err
    return err


def test_errors_exit_2_with_one_line(toy_run, tmp_path, capsys):
    assert "no run folder" in _error(["sample", str(tmp_path / "nowhere")], capsys)
    (tmp_path / "empty").mkdir()
    assert "no checkpoint in" in _error(["sample", str(tmp_path / "empty")], capsys)
    err = _error(["sample", str(toy_run), "--solver", "rk99", "--out", str(tmp_path)], capsys)
    assert "rk99" in err and "heun" in err
    err = _error(["sample", str(toy_run), "--grid", "cubic", "--out", str(tmp_path)], capsys)
    assert "unknown grid 'cubic'" in err
    assert "'digits-flow'" in _error(["train", "--preset", "nope"], capsys)
    assert "'lr'" in _error(["train", "--preset", "toy2d-flow", "train.lrr=1"], capsys)
    assert "no samples at" in _error(["eval", str(tmp_path / "nothing")], capsys)
    assert "give a reproduction NAME" in _error(["repro"], capsys)
    assert "unknown reproduction" in _error(["repro", "seed99_none"], capsys)


def test_a_model_that_does_not_fit_the_data_says_what_it_expects(tmp_path, capsys):
    run = ["train", "--run-dir", str(tmp_path / "r"), "train.steps=1"]
    err = _error([*run, "--preset", "toy2d-flow", "train.model.dim=3"], capsys)
    assert "dim=3" in err and "2 values" in err
    err = _error(
        [*run, "--preset", "digits-flow", "train.model={name: unet, image_size: 16}"], capsys
    )
    assert "expects images of shape (1, 16, 16)" in err and "(1, 8, 8)" in err
    err = _error([*run, "--preset", "toy2d-flow", "train.model={name: unet}"], capsys)
    assert "takes images" in err
    assert "data.name is empty" in _error([*run, "--preset", "dit-s2"], capsys)


def test_usage_errors_exit_2(capsys):
    assert main(["sample"]) == 2  # argparse: RUN_DIR missing
    assert "RUN_DIR" in capsys.readouterr().err
    assert main(["--threads", "0", "info"]) == 2


def test_python_api_mirrors_the_command(toy_run):
    from interpolant import api

    ema = api.sample(toy_run, n=20, nfe=4, device="cpu")
    raw = api.sample(toy_run, ["sample.ema=false"], n=20, nfe=4, device="cpu")
    assert ema.meta["ema"] is True and raw.meta["ema"] is False
    assert ema.x.shape == raw.x.shape == (20, 2) and not torch.allclose(ema.x, raw.x)
    run = api.load_run(toy_run, device="cpu")
    assert run.step == 150 and run.config.data.name == "moons"
    only = api.evaluate(ema, metrics=["energy_distance"])["metrics"]
    assert only.keys() == {"energy_distance", "energy_distance_stderr"}


def test_sample_with_cfg_guidance(tmp_path, capsys):
    """--guidance cfg:W on a class-conditional run: w = 1 reproduces plain conditional sampling
    exactly; w = 3 moves the samples; an unconditional run gets a one-line error."""
    run_dir = tmp_path / "cond"
    cond = ["data.labels=true", "train.model.class_dropout_prob=0.2"]
    assert main(["train", "--preset", "toy2d-flow", "--run-dir", str(run_dir), *TINY, *cond]) == 0
    common = [str(run_dir), "-n", "64", "--nfe", "8", "--class-label", "1", "--no-progress"]
    outs = {}
    for name, extra in {
        "plain": [],
        "w1": ["--guidance", "cfg:1.0"],
        "w3": ["--guidance", "cfg:3.0", "--guidance-interval", "0.0-0.9"],
    }.items():
        assert main(["sample", *common, "--out", str(tmp_path / name), *extra]) == 0
        outs[name] = np.load(tmp_path / name / "samples.npz")["samples"]
    assert np.array_equal(outs["plain"], outs["w1"])
    assert np.abs(outs["w3"] - outs["plain"]).max() > 1e-3
    capsys.readouterr()
    assert main(["sample", *common, "--guidance", "bogus:2"]) == 2
    assert "unknown guidance" in capsys.readouterr().err
    assert main(["sample", *common, "--guidance-interval", "0-0.5"]) == 2
    assert "need --guidance" in capsys.readouterr().err


def test_cfg_on_an_unconditional_run_is_a_clear_error(toy_run, tmp_path, capsys):
    code = main(["sample", str(toy_run), "-n", "4", "--out", str(tmp_path), "--guidance", "cfg:2"])
    assert code == 2
    assert "class-conditional" in capsys.readouterr().err


def test_sample_with_search_and_fk_steering(toy_run, tmp_path, capsys):
    """--search and --steer raise the mean reward over plain sampling and record the NFE."""
    common = [str(toy_run), "-n", "16", "--nfe", "8", "--seed", "0", "--reward", "linear:1,0"]
    runs = {
        "random": ["--search", "random:4"],
        "fk": ["--steer", "fk", "--particles", "4", "--temperature", "0.1"],
        "rbf": ["--steer", "rbf", "--budget", "40"],
    }
    plain = main(["sample", str(toy_run), "-n", "16", "--nfe", "8", "--out", str(tmp_path / "p")])
    assert plain == 0
    base = np.load(tmp_path / "p" / "samples.npz")["samples"][:, 0].mean()
    for name, extra in runs.items():
        assert main(["sample", *common, *extra, "--out", str(tmp_path / name)]) == 0
        meta = json.loads(str(np.load(tmp_path / name / "samples.npz")["meta"]))
        assert meta["scaling"]["model_evals_per_sample"] >= 4 * 7
        assert meta["scaling"]["mean_reward"] > base + 0.1
    capsys.readouterr()
    assert main(["sample", *common[:-2], "--search", "random:4"]) == 2
    assert "need --reward" in capsys.readouterr().err
    assert main(["sample", *common, "--steer", "fk", "--solver", "heun"]) == 2
    assert "stochastic" in capsys.readouterr().err
    for method in (["--search", "random:4"], ["--steer", "fk"], ["--steer", "rbf"]):
        assert main(["sample", *common, *method, "--budget", "1"]) == 2
        assert "budget" in capsys.readouterr().err
    assert main(["sample", *common[:-1], "linear:1,0,3", "--search", "random:2"]) == 2
    assert "expects samples of 3 numbers" in capsys.readouterr().err


def test_teleport_needs_an_unconditional_model_and_its_gaussian(toy_run):
    # One Gaussian for all classes would pull every class to the mean: conditional sampling
    # with teleport is refused, and so is teleport without a Gaussian (or data) to fit.
    from interpolant.api.config import SampleConfig
    from interpolant.api.runs import draw_samples, load_run

    model = load_run(toy_run).model
    settings = SampleConfig(n=4, batch_size=4, teleport=0.5)
    with pytest.raises(ValueError, match="class-conditional"):
        draw_samples(model, (2,), settings, num_classes=3, data=torch.randn(50, 2))
    with pytest.raises(ValueError, match=r"sample\.teleport needs the run's training data"):
        draw_samples(model, (2,), settings)
    x = draw_samples(model, (2,), settings, data=torch.randn(50, 2)).x
    assert x.shape == (4, 2) and torch.isfinite(x).all()


def test_schedule_skip_plan_is_applied_by_sample(toy_run, tmp_path, capsys):
    # `schedule --skip 1` also searches one (step, block) pair to skip; `sample --grid FILE`
    # then runs the network with that block as the identity at that step, as with_skip_plan.
    from interpolant.api.runs import load_run, start_noise
    from interpolant.scaling.autodiffusion import with_skip_plan
    from interpolant.solvers import sample as sample_loop

    grid_file = tmp_path / "g.json"
    search = ["schedule", str(toy_run), "--steps", "2", "--population", "4", "--epochs", "2"]
    assert main([*search, "--samples", "64", "--skip", "1", "--out", str(grid_file)]) == 0
    record = json.loads(grid_file.read_text())
    plan = record["skip_plan"]
    assert len(plan) == 2 and sum(len(blocks) for blocks in plan) == 1
    assert isinstance(record["fitness_skipped"], float)

    out = tmp_path / "s"
    argv = ["sample", str(toy_run), "--solver", "ddim", "-n", "32", "--no-progress"]
    assert main([*argv, "--grid", str(grid_file), "--out", str(out)]) == 0
    with np.load(out / "samples.npz") as z:
        x = z["samples"]
    grid = torch.tensor(record["grid"], dtype=torch.float64)
    model = load_run(toy_run).model
    noise = start_noise((2,), 0, range(32))
    kwargs = {"solver": "ddim", "grid": grid, "seed": 0}
    planned = with_skip_plan(model, grid, [frozenset(b) for b in plan], None)
    np.testing.assert_allclose(x, sample_loop(planned, noise, **kwargs).x.numpy(), atol=1e-5)
    assert not np.allclose(x, sample_loop(model, noise, **kwargs).x.detach().numpy(), atol=1e-4)
    capsys.readouterr()


def test_sample_on_a_calibrated_grid_is_searched_once_and_cached(toy_run, tmp_path, capsys):
    args = ["sample", str(toy_run), "--grid", "calibrated", "--solver", "dpmpp_2m", "--nfe", "6"]
    args += ["-n", "20", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "calibrated grid: RMSE" in out and "model evaluations, once" in out
    cached = list((toy_run / "calibration").glob("calibration-*.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # reads the cache
    assert cached[0].stat().st_mtime_ns == stamp
    with np.load(tmp_path / "a" / "samples.npz") as a, np.load(tmp_path / "b" / "samples.npz") as b:
        np.testing.assert_array_equal(a["samples"], b["samples"])
        meta = json.loads(str(a["meta"]))
    assert meta["calibration"]["sampler"]["grid"]["name"] == "density"
    assert meta["calibration"]["rmse"] <= meta["calibration"]["start_rmse"]
