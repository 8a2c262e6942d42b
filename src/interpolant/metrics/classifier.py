"""A small CNN trained by this project on sklearn's 8x8 digits: features for Frechet distances
and class probabilities for guidance and accuracy metrics.

The weights ship inside the package (``weights/digits_classifier.safetensors`` with a JSON of
the settings and the measured accuracies); they are never downloaded. Rebuild them with

    python -m interpolant.metrics.classifier --train

which is deterministic (seed 0, one thread, deterministic algorithms) and takes well under a
minute on a CPU. Inputs are digits in model space: (N, 1, 8, 8) or (N, 64) in [-1, 1], as
returned by :func:`interpolant.data.load_digits`. The classifier sees clean images only (it is
not noise-conditioned): for guidance at t > 0 apply it to the x0 estimate.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MissingFileError, UserError

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "digits_classifier.safetensors"
INFO_FILE = WEIGHTS_DIR / "digits_classifier.json"

TRAIN_SETTINGS: dict[str, Any] = {
    "seed": 0,
    "epochs": 60,
    "batch_size": 50,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "max_shift_px": 1,
    "optimizer": "AdamW, cosine decay to 0",
}


class DigitsClassifier(nn.Module):
    """conv3x3(1->16) SiLU, conv3x3(16->32) SiLU, avgpool 2, linear(512->64) SiLU = features,
    linear(64->10) = logits."""

    def __init__(self, width: int = 16, feature_dim: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        self.config = {"width": width, "feature_dim": feature_dim, "n_classes": n_classes}
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 16, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features (N, feature_dim)."""
        x = as_digit_images(x).to(self.conv1.weight.dtype)
        h = F.silu(self.conv2(F.silu(self.conv1(x))))
        return F.silu(self.fc(F.avg_pool2d(h, 2).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, n_classes)."""
        return self.head(self.features(x))


def as_digit_images(x: Tensor) -> Tensor:
    """(N, 1, 8, 8) or (N, 64) -> (N, 1, 8, 8), refusing anything else."""
    if (x.ndim == 2 and x.shape[1] == 64) or (x.ndim == 4 and tuple(x.shape[1:]) == (1, 8, 8)):
        return x.reshape(-1, 1, 8, 8)
    raise UserError(f"x must be 8x8 digits of shape (N, 1, 8, 8) or (N, 64), got {tuple(x.shape)}")


@lru_cache(maxsize=4)
def _load(path: str) -> DigitsClassifier:
    from safetensors.torch import load_file

    info_path = Path(path).with_suffix(".json")
    config = json.loads(info_path.read_text())["architecture"] if info_path.exists() else {}
    net = DigitsClassifier(**config)
    net.load_state_dict(load_file(path))
    return net.eval().requires_grad_(False)


def load_digits_classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The shipped classifier (cached, eval mode, frozen parameters; inputs keep gradients)."""
    p = Path(path) if path is not None else WEIGHTS_FILE
    if not p.is_file():
        raise MissingFileError(
            f"no classifier weights at {p}; build them with "
            "`python -m interpolant.metrics.classifier --train`"
        )
    return _load(str(p.resolve()))


@torch.no_grad()
def digits_features(
    x: Tensor, batch_size: int = 2048, classifier: DigitsClassifier | None = None
) -> Tensor:
    """Penultimate-layer features of the digit classifier, float64 (N, 64)."""
    net = classifier or load_digits_classifier()
    parts = [net.features(x[i : i + batch_size].cpu()) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts).to(torch.float64)


def class_log_probs(x: Tensor, classifier: DigitsClassifier | None = None) -> Tensor:
    """log p(y | x), shape (N, 10); differentiable in x (for classifier guidance)."""
    net = classifier or load_digits_classifier()
    return torch.log_softmax(net(x).to(torch.float64), dim=1)


def class_confidence(
    x: Tensor, labels: Tensor | None = None, classifier: DigitsClassifier | None = None
) -> Tensor:
    """p(label | x) per sample, or max_y p(y | x) without labels; differentiable in x."""
    logp = class_log_probs(x, classifier)
    if labels is None:
        return logp.max(1).values.exp()
    labels = torch.as_tensor(labels, device=logp.device).long().reshape(-1)
    if labels.shape[0] != logp.shape[0]:
        raise UserError(f"labels must have {logp.shape[0]} entries, got {labels.shape[0]}")
    return logp.gather(1, labels[:, None])[:, 0].exp()


@torch.no_grad()
def classifier_accuracy(
    x: Tensor, labels: Tensor, classifier: DigitsClassifier | None = None
) -> float:
    """Fraction of samples whose most likely class is ``labels``."""
    labels = torch.as_tensor(labels).long().reshape(-1)
    pred = class_log_probs(x, classifier).argmax(1).cpu()
    if labels.shape[0] != pred.shape[0]:
        raise UserError(f"labels must have {pred.shape[0]} entries, got {labels.shape[0]}")
    return float((pred == labels).to(torch.float64).mean())


# ----------------------------------------------------------------------------- training


def _shift(x: Tensor, g: torch.Generator, max_shift: int) -> Tensor:
    """Translate each image by an integer offset in [-max_shift, max_shift]^2 (background -1)."""
    if max_shift == 0:
        return x
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (x.shape[0], 2), generator=g)
    return torch.stack(
        [padded[i, :, a : a + 8, b : b + 8] for i, (a, b) in enumerate(offsets.tolist())]
    )


def train_digits_classifier(
    settings: dict[str, Any] | None = None, verbose: bool = True
) -> tuple[DigitsClassifier, dict[str, Any]]:
    """Train on the fixed digits train split; returns the network and a report with accuracies."""
    from ..data.digits import load_digits

    cfg = {**TRAIN_SETTINGS, **(settings or {})}
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(cfg["seed"])
        g = torch.Generator().manual_seed(cfg["seed"])
        train, test = load_digits("train"), load_digits("test")
        assert train.labels is not None and test.labels is not None
        net = DigitsClassifier()
        opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        steps_per_epoch = -(-train.x.shape[0] // cfg["batch_size"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["epochs"] * steps_per_epoch)
        start = time.perf_counter()
        for epoch in range(cfg["epochs"]):
            order = torch.randperm(train.x.shape[0], generator=g)
            for i in range(0, len(order), cfg["batch_size"]):
                idx = order[i : i + cfg["batch_size"]]
                xb = _shift(train.x[idx], g, cfg["max_shift_px"])
                loss = F.cross_entropy(net(xb), train.labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if verbose and (epoch + 1) % 10 == 0:
                print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
        seconds = time.perf_counter() - start
        net.eval().requires_grad_(False)
        report = {
            "test_accuracy": classifier_accuracy(test.x, test.labels, net),
            "train_accuracy": classifier_accuracy(train.x, train.labels, net),
            "n_train": train.x.shape[0],
            "n_test": test.x.shape[0],
            "data": {"set": "digits", **train.info.extra},
            "architecture": net.config,
            "settings": cfg,
            "train_seconds": round(seconds, 2),
            "torch_version": torch.__version__,
        }
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return net, report


def save_digits_classifier(
    net: DigitsClassifier, report: dict[str, Any], out: Path = WEIGHTS_FILE
) -> None:
    """Weights as safetensors, report as JSON next to them (same stem)."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    _load.cache_clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train or evaluate the shipped digits classifier.")
    parser.add_argument("--train", action="store_true", help="train and write the weights")
    parser.add_argument(
        "--out", type=Path, default=WEIGHTS_FILE, help="weights file (.safetensors)"
    )
    args = parser.parse_args(argv)
    if args.train:
        net, report = train_digits_classifier()
        save_digits_classifier(net, report, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    from ..data.digits import load_digits

    test = load_digits("test")
    assert test.labels is not None
    acc = classifier_accuracy(test.x, test.labels, load_digits_classifier(args.out))
    print(f"test accuracy {acc:.4f} on {test.x.shape[0]} held-out digits")


if __name__ == "__main__":
    main()
