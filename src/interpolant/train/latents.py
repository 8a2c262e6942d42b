"""Latent training from a config: the encoder applied on the fly, the decoder after sampling.

``train.encoder`` names a :class:`Codec`:

* a local folder holding a diffusers ``AutoencoderKL`` (``config.json`` and weights, as written
  by ``save_pretrained``; opened with ``local_files_only``, nothing is downloaded). Latents are
  the posterior mean times the VAE's ``scaling_factor`` s (the LDM convention,
  ``z = s E(x)``); decoding is ``x = D(z / s)``.
* ``"package.module:name"``: an importable object with ``encode(x)`` (and ``decode(z)`` for
  sampling to data space), a class of such objects (built with no arguments), or a plain
  callable ``encode(x)`` (its samples stay latents).

The trainer applies ``encode`` under ``no_grad`` to every block of training rows (after the
block's reseed, so a sampling encoder is reproducible); ``interpolant sample`` draws latents of
the shape the trainer recorded (``state.json``: ``data.latent_shape``) and decodes them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import MissingDependencyError, MissingFileError, UserError, WrongTypeError

#: Rows decoded per call (memory only).
DECODE_BATCH = 256


@dataclass
class Codec:
    """``encode(x) -> z`` and, when known, ``decode(z) -> x``; ``name`` goes into checkpoints."""

    encode: Callable[[Tensor], Tensor]
    decode: Callable[[Tensor], Tensor] | None
    name: str
    spec: str
    scale: float | None = None

    def decode_all(self, z: Tensor, batch: int = DECODE_BATCH) -> Tensor:
        """``decode`` over ``z`` in batches, under ``no_grad``, as float32 on the CPU."""
        if self.decode is None:
            raise UserError(
                f"train.encoder={self.spec!r} has no decode(z): name an object with encode and "
                "decode methods to sample in data space"
            )
        with torch.no_grad():
            parts = [self.decode(z[i : i + batch]).float().cpu() for i in range(0, len(z), batch)]
        return torch.cat(parts) if parts else z


def vae_codec(
    folder: str | Path, device: str | torch.device = "cpu", key: str = "train.encoder"
) -> Codec:
    """The :class:`Codec` of the diffusers AutoencoderKL saved in ``folder``; ``key`` is the
    option that named it (for the error messages). ``codec.scale`` is its ``scaling_factor``."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        raise MissingFileError(
            f"{key}={str(root)!r}: expected a diffusers AutoencoderKL folder (config.json and "
            "weights, as written by save_pretrained) or 'module:object'; nothing is downloaded"
        )
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise MissingDependencyError(
            f"{key} with an AutoencoderKL folder needs diffusers: pip install diffusers"
        ) from None
    vae = AutoencoderKL.from_pretrained(str(root), local_files_only=True).to(device).eval()
    vae.requires_grad_(False)
    scale = float(getattr(vae.config, "scaling_factor", 1.0))

    def encode(x: Tensor) -> Tensor:
        return vae.encode(x.to(device)).latent_dist.mode() * scale

    def decode(z: Tensor) -> Tensor:
        return vae.decode(z.to(device) / scale).sample

    return Codec(encode, decode, "AutoencoderKL", str(root), scale)


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(
            f"train.encoder={spec!r}: cannot import module {module_name!r} ({err})"
        ) from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"train.encoder={spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_codec(spec: str, device: str | torch.device = "cpu") -> Codec:
    """The :class:`Codec` ``spec`` names (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise WrongTypeError(
            f"train.encoder must be a folder or 'module:object' string, got {spec!r}"
        )
    if ":" not in spec or Path(spec).is_dir():
        return vae_codec(spec, device)
    obj = _import(spec)
    if isinstance(obj, type):
        obj = obj()
    module = obj if isinstance(obj, torch.nn.Module) else None
    if module is not None:
        module.to(device).eval().requires_grad_(False)
    if callable(getattr(obj, "encode", None)):
        decode = getattr(obj, "decode", None)
        name = type(obj).__name__
        return Codec(obj.encode, decode if callable(decode) else None, name, spec)
    if callable(obj):
        return Codec(obj, None, getattr(obj, "__name__", type(obj).__name__), spec)
    raise WrongTypeError(
        f"train.encoder={spec!r} is a {type(obj).__name__}: expected an object with "
        "encode(x) / decode(z), a class of such, or a callable encode(x)"
    )


def first_row(data: Any) -> Tensor:
    """Row 0 of a tensor or of a map-style Dataset (an item or an (x, y) item) as (1, ...)."""
    if isinstance(data, Tensor):
        return data[:1]
    item = data[0]
    x = item[0] if isinstance(item, tuple | list) else item
    return torch.as_tensor(x)[None]


def latent_shape(encode: Callable[[Tensor], Tensor], example: Tensor) -> tuple[int, ...]:
    """The per-sample shape of ``encode`` on one example row (``example``: (1, ...))."""
    with torch.no_grad():
        z = encode(example)
    if not isinstance(z, Tensor) or z.ndim < 2 or z.shape[0] != example.shape[0]:
        raise UserError(
            f"the encoder must map a batch (N, ...) to latents (N, ...); on "
            f"{tuple(example.shape)} it returned "
            f"{tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__}"
        )
    return tuple(int(s) for s in z.shape[1:])


__all__ = ["DECODE_BATCH", "Codec", "first_row", "latent_shape", "load_codec", "vae_codec"]
