"""What sample and eval show: pictures that look like the data (grey stays grey, tables get a
pair plot), unbiased distances with their standard error, and the NFE actually spent."""

from __future__ import annotations

import statistics

import pytest
import torch

from interpolant import api
from interpolant.api.evaluate import format_metrics
from interpolant.api.runs import Samples, picture_of, plot_samples
from interpolant.cli.main import main
from interpolant.cli.sample import _nfe_spent
from interpolant.metrics import energy_distance, mmd
from interpolant.metrics.jackknife import energy_distance_with_stderr, mmd_with_stderr
from interpolant.plots import plot_image_grid

matplotlib_image = pytest.importorskip("matplotlib.image")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _centre_pixel(path) -> torch.Tensor:
    picture = torch.from_numpy(matplotlib_image.imread(str(path)))[..., :3]
    h, w = picture.shape[:2]
    return picture[h // 2, w // 2]


@pytest.mark.parametrize("value, expected", [(1.0, 1.0), (-1.0, 0.0), (0.0, 0.5)])
def test_grey_images_keep_their_values_and_match_their_rgb_copy(tmp_path, value, expected):
    grey = torch.full((1, 1, 8, 8), value)
    pixel = _centre_pixel(plot_image_grid(grey, tmp_path / "grey.png"))
    assert torch.allclose(pixel, torch.full((3,), expected), atol=0.01)  # high is white
    rgb = _centre_pixel(plot_image_grid(grey.expand(1, 3, 8, 8), tmp_path / "rgb.png"))
    assert torch.allclose(pixel, rgb, atol=0.01)


def test_tables_of_three_or_more_columns_get_a_pair_plot_and_others_a_reason(tmp_path):
    x = torch.randn(50, 5)
    assert picture_of((5,)) == "a pair plot of the first 4 of 5 columns over held-out data"
    assert plot_samples(Samples(x, None), tmp_path / "pairs.png", torch.randn(30, 5)).is_file()
    assert picture_of((3, 4)) is None and picture_of((1,)) is None
    assert plot_samples(Samples(torch.randn(5, 3, 4), None), tmp_path / "none.png") is None


def test_class_rows_skip_a_class_with_no_samples(tmp_path):
    # Joint samples may draw no example of a class: the grid has one row per class drawn,
    # labelled by its class (this divided by zero before).
    x = torch.rand(9, 1, 8, 8) * 2 - 1
    labels = torch.tensor([0, 0, 0, 2, 2, 2, 3, 3, 3])
    out = plot_samples(Samples(x, labels, {}), tmp_path / "classes.png")
    assert out is not None and out.is_file()
    image = matplotlib_image.imread(str(out))
    two_rows = plot_samples(Samples(x[:6], labels[:6], {}), tmp_path / "two.png")
    assert two_rows is not None
    assert image.shape[0] > matplotlib_image.imread(str(two_rows)).shape[0]  # 3 rows, not 4 or 2


def test_sample_of_a_table_says_what_samples_png_shows(tmp_path, capsys):
    import numpy as np

    table = tmp_path / "table.csv"
    np.savetxt(table, np.random.default_rng(0).normal(size=(60, 5)), delimiter=",")
    run_dir = tmp_path / "run"
    overrides = [
        f"data.name={table}",
        "train.steps=2",
        f"train.run_dir={run_dir}",
        "train.model.width=16",
        "train.batch_size=16",
        "train.progress=false",
    ]
    api.train("toy2d-flow", overrides, plots=False)
    assert main(["sample", str(run_dir), "-n", "20", "--nfe", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "samples.png: a pair plot of the first 4 of 5 columns over held-out data" in out
    assert (run_dir / "samples" / "samples.png").is_file()


def test_jackknife_estimates_are_the_unbiased_statistics():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 3, generator=gen), torch.randn(80, 3, generator=gen) + 0.2
    assert mmd_with_stderr(x, y).value == pytest.approx(
        float(mmd(x.double(), y.double())), rel=1e-10
    )
    ed = energy_distance_with_stderr(x, y).value
    assert ed == pytest.approx(float(energy_distance(x.double(), y.double())), rel=1e-10)


def test_jackknife_standard_error_matches_the_spread_over_repeated_draws():
    """Different distributions: the standard error is that of the estimates over 120 draws
    (within 25%). Equal distributions (a degenerate U-statistic): the jackknife is known to be
    conservative; it stays within [1, 2.5] times the spread, and the mean is ~0."""
    gen = torch.Generator().manual_seed(1)
    for shift, lo, hi in ((0.5, 0.75, 1.25), (0.0, 1.0, 2.5)):
        for estimator in (energy_distance_with_stderr, lambda a, b: mmd_with_stderr(a, b, 1.0)):
            draws = [
                estimator(
                    torch.randn(90, 2, generator=gen), torch.randn(60, 2, generator=gen) + shift
                )
                for _ in range(120)
            ]
            spread = statistics.stdev(e.value for e in draws)
            rms_error = statistics.fmean(e.stderr**2 for e in draws) ** 0.5
            assert lo * spread < rms_error < hi * spread, (shift, spread, rms_error)
            if shift == 0.0:
                assert abs(statistics.fmean(e.value for e in draws)) < 3 * spread / 120**0.5


def test_eval_output_pairs_each_estimate_with_its_error_and_explains_negatives():
    lines = format_metrics({"sliced_wasserstein": 0.1, "mmd": -0.0003, "mmd_stderr": 0.0007})
    assert lines[0].split() == ["sliced_wasserstein", "0.1"]
    assert lines[1].split() == ["mmd", "-0.0003", "±", "0.0007"]
    assert "small negative ones included" in lines[2] and "indistinguishable" in lines[2]
    assert len(format_metrics({"fd_digits": 3.0})) == 1  # no note without unbiased estimates


def test_the_summary_reports_the_nfe_spent_and_cfg_doubles_it(tmp_path):
    run_dir = tmp_path / "cond"
    overrides = [
        "data.labels=true",
        "train.model.class_dropout_prob=0.2",
        "train.steps=2",
        "train.model.width=16",
        "train.batch_size=32",
        f"train.run_dir={run_dir}",
        "train.progress=false",
    ]
    api.train("digits-flow", overrides, plots=False)
    plain = api.sample(run_dir, n=4, solver="euler", nfe=6)
    guided = api.sample(run_dir, n=4, solver="euler", nfe=6, guidance="cfg:2.0")
    assert plain.meta["nfe_spent"] == 6 and guided.meta["nfe_spent"] == 12
    assert _nfe_spent(12, {"nfe": 6, "grid": "uniform"}) == (
        "12 NFE spent per sample (the solver's nominal budget: 6)"
    )
    assert _nfe_spent(6, {"nfe": 6, "grid": "uniform"}) == "6 NFE spent per sample"
