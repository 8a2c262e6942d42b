"""Figures for runs and samples: image grids, 2-D scatter plots, trajectories, loss curves.

matplotlib is an optional dependency (``pip install 'interpolant[all]'``); it is imported on
first use with the non-interactive Agg backend, so plotting works without a display. Every
function writes a PNG to ``out`` and returns its path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import MissingDependencyError, MissingFileError, UserError


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib
    except ImportError as err:
        raise MissingDependencyError(
            "plots need matplotlib, an optional dependency: pip install 'interpolant[all]'"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> Tensor:
    """Tile (N, C, H, W) images into one (C, rows (H + pad) - pad, nrow (W + pad) - pad) image;
    the padding takes the grid's minimum value."""
    if images.ndim != 4:
        raise UserError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    low = float(images.min()) if n else 0.0
    grid = torch.full((c, rows * (h + pad) - pad, nrow * (w + pad) - pad), low)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = images[i]
    return grid


def plot_image_grid(
    images: Tensor,
    out: str | Path,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    cell_inches: float = 0.6,
) -> Path:
    """A PNG of (N, C, H, W) images (C = 1 grey, 3 RGB) tiled ``nrow`` per row.

    Values are clipped to ``value_range`` and mapped to [0, 1]: the low end is black and the
    high end white, in grey as in colour, so a picture looks like its data (sklearn's digits
    are light strokes on black). ``row_labels`` names each row on the left (e.g. the class).
    """
    plt = _pyplot()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise UserError(
            f"images must have shape (N, 1 or 3, H, W) to be drawn, got {tuple(images.shape)}"
        )
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    nrow = nrow or math.ceil(math.sqrt(x.shape[0]))
    grid = image_grid(x, nrow, pad=max(1, x.shape[-1] // 8))
    rows = math.ceil(x.shape[0] / nrow)
    fig, ax = plt.subplots(figsize=(cell_inches * nrow + 0.6, cell_inches * rows + 0.6), dpi=100)
    if grid.shape[0] == 1:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        step = images.shape[-2] + max(1, x.shape[-1] // 8)
        ax.set_yticks([r * step + images.shape[-2] / 2 - 0.5 for r in range(len(row_labels))])
        ax.set_yticklabels(list(row_labels))
        ax.tick_params(length=0)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, out)


def plot_scatter(
    samples: Tensor,
    out: str | Path,
    data: Tensor | None = None,
    title: str | None = None,
    max_points: int = 5000,
) -> Path:
    """2-D samples (orange) over reference data (grey), on equal axes."""
    plt = _pyplot()
    for name, value in (("samples", samples), ("data", data)):
        if value is not None and (value.ndim != 2 or value.shape[1] != 2):
            raise UserError(f"{name} must have shape (N, 2) for a scatter plot, got {value.shape}")
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if data is not None:
        d = data[:max_points].detach().cpu()
        ax.scatter(d[:, 0], d[:, 1], s=3, c="0.6", alpha=0.5, label="data", linewidths=0)
    s = samples[:max_points].detach().cpu()
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:orange", alpha=0.6, label="samples", linewidths=0)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, out)


def plot_pairs(
    samples: Tensor,
    out: str | Path,
    data: Tensor | None = None,
    columns: int = 4,
    max_points: int = 2000,
    title: str | None = None,
) -> Path:
    """Pair plot of the first ``columns`` columns of (N, D) samples (orange) over reference
    data (grey): scatter plots off the diagonal, histograms on it."""
    plt = _pyplot()
    for name, value in (("samples", samples), ("data", data)):
        if value is not None and value.ndim != 2:
            raise UserError(f"{name} must have shape (N, D) for a pair plot, got {value.shape}")
    k = min(columns, samples.shape[1])
    s = samples[:max_points, :k].detach().float().cpu()
    d = None if data is None else data[:max_points, :k].detach().float().cpu()
    fig, axes = plt.subplots(k, k, figsize=(1.9 * k + 0.4, 1.9 * k + 0.4), dpi=100, squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i][j]
            if i == j:
                both = s[:, i] if d is None else torch.cat([s[:, i], d[:, i]])
                bins = torch.linspace(float(both.min()), float(both.max()), 31).numpy()
                if d is not None:
                    ax.hist(d[:, i].numpy(), bins=bins, color="0.6", alpha=0.6, density=True)
                ax.hist(s[:, i].numpy(), bins=bins, color="tab:orange", alpha=0.6, density=True)
            else:
                if d is not None:
                    ax.scatter(d[:, j], d[:, i], s=2, c="0.6", alpha=0.4, linewidths=0)
                ax.scatter(s[:, j], s[:, i], s=2, c="tab:orange", alpha=0.5, linewidths=0)
            ax.set_xticks([]), ax.set_yticks([])
            if i == k - 1:
                ax.set_xlabel(f"column {j + 1}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"column {i + 1}", fontsize=8)
    fig.suptitle(
        title or f"first {k} of {samples.shape[1]} columns: samples (orange), data (grey)",
        fontsize=9,
    )
    return _save(fig, out)


def plot_trajectories(
    trajectory: Sequence[Tensor] | Tensor,
    out: str | Path,
    data: Tensor | None = None,
    max_paths: int = 200,
    title: str | None = None,
) -> Path:
    """Paths of 2-D samples through the sampler: a list of (N, 2) states from t = 1 to 0 (as
    ``sample(..., keep_trajectory=True)`` returns), drawn as lines from the source (blue dots)
    to the samples (orange dots), over the data in grey."""
    plt = _pyplot()
    path = torch.stack(list(trajectory)) if not isinstance(trajectory, Tensor) else trajectory
    if path.ndim != 3 or path.shape[-1] != 2:
        raise UserError(f"trajectory must be (steps, N, 2) states, got {tuple(path.shape)}")
    path = path[:, :max_paths].detach().float().cpu()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if data is not None:
        d = data[:5000].detach().cpu()
        ax.scatter(d[:, 0], d[:, 1], s=3, c="0.75", alpha=0.5, linewidths=0)
    ax.plot(path[:, :, 0].numpy(), path[:, :, 1].numpy(), c="0.3", lw=0.4, alpha=0.5)
    ax.scatter(path[0, :, 0], path[0, :, 1], s=6, c="tab:blue", label="t = 1 (source)")
    ax.scatter(path[-1, :, 0], path[-1, :, 1], s=6, c="tab:orange", label="t = 0 (sample)")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, out)


def read_stats(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``stats.jsonl`` (a run folder or the file itself)."""
    file = Path(path)
    if file.is_dir():
        file = file / "stats.jsonl"
    if not file.is_file():
        raise MissingFileError(f"no training statistics at {file}")
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def plot_loss_curve(
    stats: str | Path | Sequence[dict[str, Any]], out: str | Path, title: str | None = None
) -> Path:
    """Training loss against step (log scale) from ``stats.jsonl`` rows or a run folder."""
    plt = _pyplot()
    rows = read_stats(stats) if isinstance(stats, str | Path) else list(stats)
    if not rows:
        raise UserError("no statistics rows to plot")
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], c="tab:blue", lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean per logged interval)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, out)


__all__ = [
    "image_grid",
    "plot_image_grid",
    "plot_loss_curve",
    "plot_pairs",
    "plot_scatter",
    "plot_trajectories",
    "read_stats",
]
