"""Inception-v3 as the FID papers use it (pytorch-fid's ``FIDInceptionA/C/E``), loading the
weights from a file the user provides; nothing is ever downloaded.

The file is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state dict with
torchvision's ``Inception3`` key names (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.
running_mean``, ..., ``fc.weight`` of 1008 classes, no ``AuxLogits``), the port of the
TensorFlow graph of Heusel et al. (2017) that every published FID is computed with. The network
is written out here (torchvision is not a dependency) with the TF graph's differences from
torchvision's Inception3: average pools that do not count padding in the A, C and first E
blocks, and a max pool in the last E block.

Features (:meth:`InceptionV3.features`): images in [-1, 1] (the library's image range; pytorch-fid
takes [0, 1] and maps it to [-1, 1] itself) of any size, 1 or 3 channels (grey is repeated),
resized bilinearly to 299 x 299, then the 2048 pool3 activations.

Checked here: the key names and shapes load (tests on a file of random weights), the parameter
count is torchvision's Inception3 without AuxLogits with a 1008-way fc, and the blocks follow
pytorch-fid's. Not checked here (the real weights are not shipped, nothing is downloaded):
bit-level agreement of FID values with pytorch-fid on its weights file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MissingFileError, UserError

#: The weights file name pytorch-fid ships (the hash part varies between copies).
WEIGHTS_PATTERN = "pt_inception-2015-12-05-*.pth"
FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    # The TF graph's average pools exclude the padding (pytorch-fid's FIDInception blocks).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """``max_pool``: the last block of the TF graph max-pools its pool branch."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class InceptionV3(nn.Module):
    """The FID Inception-v3 (torchvision's ``Inception3`` key names, 1008-way ``fc``)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def pool3(self, x: Tensor) -> Tensor:
        """(B, 3, 299, 299) in [-1, 1] -> (B, 2048) pool3 activations."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool3(x)

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 64, progress: bool = False) -> Tensor:
        """(N, 2048) float64 pool3 features of images (N, C, H, W) in [-1, 1], C in {1, 3}."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise UserError(
                "Inception features need images of shape (N, 1 or 3, H, W) in [-1, 1], got "
                f"{tuple(images.shape)}"
            )
        device = next(self.parameters()).device
        chunks = range(0, images.shape[0], batch_size)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="inception", leave=False)
        out = []
        for i in chunks:
            x = images[i : i + batch_size].to(device, torch.float32).clamp(-1.0, 1.0)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(self.pool3(x).to(torch.float64).cpu())
        return torch.cat(out)


def _optional_key(key: str) -> bool:
    # BatchNorm's step counter: absent from older state dicts, never used in eval mode.
    return key.endswith("num_batches_tracked")


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionV3:
    """The FID Inception-v3 with the weights in ``path`` (pytorch-fid's
    ``pt_inception-2015-12-05-*.pth``), in eval mode. Missing or unexpected keys and wrong
    shapes are refused, naming them."""
    file = Path(path)
    if not file.is_file():
        raise MissingFileError(
            f"no Inception weights at {str(file)!r}: pass pytorch-fid's {WEIGHTS_PATTERN} "
            "(interpolant never downloads weights)"
        )
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors of a wrong file
        raise UserError(f"{file} is not a PyTorch state-dict file: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(
            f"{file} does not hold a state dict of tensors (got {type(state).__name__})"
        )
    net = InceptionV3()
    own = net.state_dict()
    missing = sorted(k for k in own if k not in state and not _optional_key(k))
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        raise UserError(
            f"{file} is not an FID Inception-v3 state dict ({WEIGHTS_PATTERN}): "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}"
        )
    wrong = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        shown = ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:5]
        )
        raise UserError(f"{file}: tensors of the wrong shape: {shown}")
    net.load_state_dict(state, strict=False)
    return net.to(device).eval().requires_grad_(False)


def inception_features(
    path: str | Path, device: str | torch.device = "cpu", batch_size: int = 64
) -> Callable[[Tensor], Tensor]:
    """A feature function ``images -> (N, 2048)`` for :func:`~interpolant.metrics.fid.
    frechet_distance` and friends, with the network loaded once."""
    net = load_inception(path, device)

    def features(images: Tensor) -> Tensor:
        return net.features(images, batch_size=batch_size)

    return features


__all__ = [
    "FEATURE_DIM",
    "WEIGHTS_PATTERN",
    "InceptionV3",
    "inception_features",
    "load_inception",
]
