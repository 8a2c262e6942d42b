"""Randomness: one counter-based stream per sample, below paths and solvers.

The stream contract (docs/concepts.md, "Randomness"):

* ``derive_seed(stream, seed, index)`` is the key of sample ``index`` of the stream named
  ``stream`` under the user's ``seed``: a 63-bit integer from SplitMix64 mixing of a hash of the
  name, the seed and the index. Every derived seed in the library comes from it (no additive
  offsets, which collide).
* A :class:`Streams` object holds the keys of a batch of samples and counts its draws. The d-th
  draw of row i is a function of (key_i, d, the shape drawn) only: never of the batch size, the
  other rows, which rows are active, or the device. Values are computed on the CPU (float32, or
  float64 when float64 is asked for) and then moved.
* Bits: row i's d-th draw uses the sub-key ``k = mix(key_i + (d + 1) G2)`` and the 64-bit words
  ``w_j = mix(k + j G)`` (``mix`` the SplitMix64 output function, Steele et al. 2014; G, G2 odd
  constants), computed for a whole batch at once (vectorised, no Python loop over samples).
* Normals: Box-Muller on pairs. Word j gives u1 = (w_j >> 24 + 1/2) 2^-40 (40 bits) and
  theta = 2 pi (w_j mod 2^24) 2^-24; a row of D values is
  ``[r_j cos theta_j for j < H] + [r_j sin theta_j for j < H]`` cut to D, H = ceil(D / 2),
  r = sqrt(-2 log u1). The largest |value| is sqrt(80 log 2) = 7.4 (a tail of mass 1e-13 is cut).
* Uniforms: ``(w_j >> 11) 2^-53`` in float64 (the default), ``(w_j >> 40) 2^-24`` in float32.
  Categorical draws are inverse-CDF in float64 (seed paper 7: float32 Gumbel draws lower the
  temperature).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import UserError

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # the Weyl increment of SplitMix64
_DRAW = 0xD1B54A32D192ED03  # a second odd constant, for the draw counter
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

_U64 = np.uint64
_S30, _S27, _S31, _S24, _S11, _S40 = (_U64(s) for s in (30, 27, 31, 24, 11, 40))
_LOW24 = _U64((1 << 24) - 1)
_TWO_PI_2_24 = 2.0 * math.pi * 2.0**-24


def _mix_int(z: int) -> int:
    """SplitMix64's output function on a Python int (mod 2^64)."""
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array, in place (wrapping arithmetic)."""
    z ^= z >> _S30
    z *= _U64(_M1)
    z ^= z >> _S27
    z *= _U64(_M2)
    z ^= z >> _S31
    return z


@lru_cache(maxsize=256)
def _stream_id(stream: str) -> int:
    return int.from_bytes(hashlib.blake2b(stream.encode(), digest_size=8).digest(), "little")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise UserError(f"seed must be an int, got {seed!r}")
    return int(seed)


def _base(stream: str, seed: int) -> int:
    return _mix_int((_stream_id(stream) ^ _mix_int(_check_seed(seed) & _MASK64)) & _MASK64)


def derive_seed(stream: str, seed: int, index: int = 0) -> int:
    """The 63-bit key of sample ``index`` of the stream ``stream`` under ``seed`` (a valid seed
    for torch, numpy and Python's random as well)."""
    return _mix_int((_base(stream, seed) + int(index) * _GOLDEN) & _MASK64) >> 1


def derive_keys(stream: str, seed: int, index: Sequence[int] | Tensor | np.ndarray) -> np.ndarray:
    """``derive_seed(stream, seed, i)`` for every i in ``index``, vectorised (uint64)."""
    idx = np.asarray(index.cpu() if isinstance(index, Tensor) else index, dtype=np.int64)
    if idx.ndim != 1:
        raise UserError(f"index must be one-dimensional, got shape {idx.shape}")
    words = idx.astype(np.uint64) * _U64(_GOLDEN) + _U64(_base(stream, seed))
    return _mix(words) >> _U64(1)


def fresh_seed() -> int:
    """A seed drawn from torch's global generator (so ``torch.manual_seed`` fixes it)."""
    return int(torch.randint(0, 2**62, (1,), dtype=torch.int64))


class Streams:
    """One counter-based random stream per sample (see the module docstring).

    ``Streams(seed, index)`` gives row r the key ``derive_seed(stream, seed, index[r])``; an int
    ``index`` means ``range(index)``. Each draw (``normal``, ``uniform``, ``categorical``)
    advances the shared draw counter by one, whichever rows it draws for.
    """

    def __init__(
        self,
        seed: int,
        index: int | Sequence[int] | Tensor | np.ndarray,
        stream: str = "sampler",
    ) -> None:
        if isinstance(index, bool):
            raise UserError(f"index must be a batch size or sample numbers, got {index!r}")
        if isinstance(index, int | np.integer):
            if index < 0:
                raise UserError(f"the batch size must be >= 0, got {index}")
            index = np.arange(int(index), dtype=np.int64)
        self.seed, self.stream = _check_seed(seed), stream
        self.keys = derive_keys(stream, seed, index)
        self.draws = 0

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __repr__(self) -> str:
        return f"Streams({self.stream!r}, seed={self.seed}, rows={len(self)}, draws={self.draws})"

    def _words(self, count: int, rows: Tensor | np.ndarray | None, draw: int | None) -> np.ndarray:
        """(n_rows, count) 64-bit words of draw number ``draw`` (default: the next one, which
        advances the counter; an explicit number leaves it alone)."""
        keys = self.keys if rows is None else self.keys[_as_numpy_index(rows)]
        if draw is None:
            self.draws += 1
            draw = self.draws
        elif isinstance(draw, bool) or not isinstance(draw, int) or draw < 1:
            raise UserError(f"draw must be an int >= 1, got {draw!r}")
        sub = _mix(keys + _U64((draw * _DRAW) & _MASK64))
        return _mix(sub[:, None] + _counters(count)[None, :])

    def normal(
        self,
        shape: Sequence[int],
        rows: Tensor | np.ndarray | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        draw: int | None = None,
    ) -> Tensor:
        """Standard normals (n_rows, *shape): Box-Muller on this draw's words (``draw``: an
        explicit draw number >= 1, for callers that number their draws themselves)."""
        size = math.prod(int(s) for s in shape)
        half = (size + 1) // 2
        words = self._words(half, rows, draw)
        work = np.float64 if dtype == torch.float64 else np.float32
        u1 = ((words >> _S24).astype(work) + work(0.5)) * work(2.0**-40)
        theta = (words & _LOW24).astype(work) * work(_TWO_PI_2_24)
        r = torch.from_numpy(u1).log_().mul_(-2.0).sqrt_()
        angle = torch.from_numpy(theta)
        out = torch.cat([torch.cos(angle).mul_(r), torch.sin(angle).mul_(r)], dim=1)
        if 2 * half != size:
            out = out[:, :size]
        out = out.reshape(words.shape[0], *shape)
        return out.to(device=device, dtype=dtype) if device is not None else out.to(dtype)

    def normal_like(self, like: Tensor) -> Tensor:
        """Standard normals shaped like ``like`` (one row per sample), on its device and dtype."""
        if like.shape[0] != len(self):
            raise UserError(f"{len(self)} random streams for a batch of {like.shape[0]}")
        return self.normal(like.shape[1:], dtype=like.dtype, device=like.device)

    def uniform(
        self,
        shape: Sequence[int] = (),
        rows: Tensor | np.ndarray | None = None,
        dtype: torch.dtype = torch.float64,
        draw: int | None = None,
    ) -> Tensor:
        """Uniforms in [0, 1) (n_rows, *shape) on the 2^-53 grid (float64) or the 2^-24 grid
        (float32, like ``torch.rand``)."""
        size = math.prod(int(s) for s in shape)
        words = self._words(size, rows, draw)
        if dtype == torch.float64:
            u = (words >> _S11).astype(np.float64) * 2.0**-53
        else:
            u = (words >> _S40).astype(np.float64) * 2.0**-24
        return torch.from_numpy(u).to(dtype).reshape(words.shape[0], *shape)

    def categorical(self, probs: Tensor, rows: Tensor | np.ndarray | None = None) -> Tensor:
        """One draw per row from ``probs`` (n_rows, C) (unnormalised weights), by inverse CDF
        in float64."""
        u = self.uniform((), rows).to(probs.device)
        return inverse_cdf(probs, u)

    def permutation(self, n: int) -> Tensor:
        """A random permutation of range(n) for each row (n_rows, n): argsort of uniforms."""
        return self.uniform((n,)).argsort(dim=-1)


def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """One exact categorical draw per row of ``probs`` (..., C) from uniforms ``u`` (...) in
    float64 (robust to unnormalised rows)."""
    cdf = probs.to(torch.float64).cumsum(-1)
    target = (u.to(torch.float64) * cdf[..., -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True).squeeze(-1)
    return idx.clamp_max(probs.shape[-1] - 1)


@lru_cache(maxsize=64)
def _counters(count: int) -> np.ndarray:
    counters = np.arange(count, dtype=np.uint64) * _U64(_GOLDEN)
    counters.setflags(write=False)
    return counters


def _as_numpy_index(rows: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(rows, Tensor):
        return rows.detach().cpu().numpy()
    return np.asarray(rows)


def normal(
    shape: Sequence[int],
    seed: int,
    index: int | Sequence[int] | Tensor,
    stream: str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The first normal draw of the streams ``(stream, seed, index)``: (len(index), *shape)."""
    return Streams(seed, index, stream).normal(shape, dtype=dtype)


__all__ = [
    "Streams",
    "derive_keys",
    "derive_seed",
    "fresh_seed",
    "inverse_cdf",
    "normal",
]
