"""Plots: the image-grid layout exactly, and that each figure is a readable PNG of its data."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("matplotlib")

from matplotlib.image import imread

from interpolant import plots


def test_image_grid_places_each_image_in_its_cell():
    images = torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1).expand(5, 1, 2, 3) + 1
    grid = plots.image_grid(images, nrow=2, pad=1)
    assert grid.shape == (1, 3 * 3 - 1, 2 * 4 - 1)
    for i in range(5):
        r, k = divmod(i, 2)
        cell = grid[0, r * 3 : r * 3 + 2, k * 4 : k * 4 + 3]
        assert torch.equal(cell, torch.full((2, 3), float(i + 1)))
    # Padding and the empty sixth cell take the smallest value.
    assert grid[0, 2, :].eq(1).all() and grid[0, 6:, 4:].eq(1).all()


def test_image_grid_png_shows_dark_digits_on_light(tmp_path):
    images = -torch.ones(4, 1, 8, 8)
    images[:, :, 2:6, 3:5] = 1.0  # a bright bar in model space is drawn dark
    path = plots.plot_image_grid(images, tmp_path / "g.png", nrow=2, row_labels=["a", "b"])
    pixels = imread(path)[..., :3].mean(-1)
    assert pixels.max() > 0.9 and pixels.min() < 0.1
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\)"):
        plots.plot_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "bad.png")


def test_scatter_and_trajectories_refuse_other_shapes(tmp_path):
    x = torch.randn(50, 2)
    assert imread(plots.plot_scatter(x, tmp_path / "s.png", data=x + 1)).shape[-1] in (3, 4)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.plot_scatter(torch.randn(5, 3), tmp_path / "s3.png")
    path = [x * (1 - s) for s in torch.linspace(0, 1, 6)]
    assert plots.plot_trajectories(path, tmp_path / "t.png", data=x).is_file()
    with pytest.raises(ValueError, match="steps, N, 2"):
        plots.plot_trajectories(torch.randn(3, 5, 4), tmp_path / "t2.png")


def test_loss_curve_reads_stats_rows(tmp_path):
    rows = [{"step": s, "loss": 1.0 / s} for s in (10, 20, 30)]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plots.read_stats(tmp_path) == rows
    assert imread(plots.plot_loss_curve(tmp_path, tmp_path / "loss.png")).ndim == 3
    with pytest.raises(FileNotFoundError, match="no training statistics"):
        plots.read_stats(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no statistics rows"):
        plots.plot_loss_curve([], tmp_path / "empty.png")
