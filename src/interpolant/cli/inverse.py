"""``interpolant inverse``: simulate a measurement of an input and reconstruct it with a prior.

The prior is a trained run (its newest checkpoint, EMA weights) or ``digits-mixture``: a
Gaussian mixture fitted to the digits' training split, whose denoiser is exact (no training;
the prior of the seed-35 reproduction). The input is in the data's units (an image file, a
.npy/.npz array, or ``test:K`` for the first K held-out examples of the prior's data); it is
measured with ``--operator`` and ``--noise`` and reconstructed with ``--solver``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import MissingFileError, UserError

#: The prior that needs no run folder.
MIXTURE_PRIOR = "digits-mixture"


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``inverse`` subcommand to ``sub``."""
    p = sub.add_parser(
        "inverse",
        help="solve an inverse problem (inpainting, super-resolution, MRI, CT, ...)",
        formatter_class=formatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument(
        "prior", metavar="RUN_DIR", help=f"a trained run folder, or {MIXTURE_PRIOR!r} (exact)"
    )
    p.add_argument(
        "--input",
        default="test:8",
        help="an image file (read as values in [0, 1]), a .npy/.npz array (N, ...) in the data's "
        "units, or test:K (the first K held-out examples; default test:8)",
    )
    p.add_argument(
        "--operator",
        default="inpaint-box",
        help="inpaint-box, inpaint-random:P, sr:K, blur:STD, project:M, mri:ACC, ct:ANGLES",
    )
    p.add_argument("--solver", default="dps", help="dps, red_diff, dc, repaint or pinv")
    p.add_argument(
        "--nfe", type=int, default=100, help="model evaluations (steps for red_diff and repaint)"
    )
    p.add_argument("--noise", type=float, default=0.01, help="measurement noise std (model units)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the per-sample streams (measurement noise, start noise, sampler)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--out", type=Path, default=Path("inverse_out"), help="output folder")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="solver option, e.g. zeta=0.5, lam=0.25 or grid=karras (repeatable)",
    )


def _prior(name: str, device: str) -> tuple[Any, Any]:
    """(Model, DataInfo) of a run folder or of the exact digits mixture."""
    from ..api.runs import load_run

    if name == MIXTURE_PRIOR:
        from ..data import load_dataset
        from ..inverse import fit_mixture
        from ..paths import VPLinear

        data = load_dataset("digits", split="train")
        if data.labels is None:
            raise UserError("the digits data set has no labels to fit the mixture with")
        return fit_mixture(data.x, data.labels).model(VPLinear(), dtype=torch.float32), data.info
    run = load_run(name, device=device)
    if run.data_info is None:
        raise UserError(f"{run.checkpoint} does not record its data's shape")
    return run.model, run.data_info


def _read_input(spec: str, info: Any, prior: str) -> Tensor:
    """The input examples in the data's units, shape (N, *info.shape)."""
    shape = tuple(info.shape)
    if spec.startswith("test:"):
        from ..api.config import DataConfig
        from ..api.runs import load_data, load_run

        count = int(spec.split(":", 1)[1])
        if prior == MIXTURE_PRIOR:
            from ..data import load_dataset

            test = load_dataset("digits", split="test")
        else:
            test = load_data(DataConfig(**load_run(prior).config.data.__dict__), "test")
        return info.normalizer.inverse(test.x[:count])
    path = Path(spec)
    if not path.exists():
        raise MissingFileError(f"--input {spec}: no such file")
    if path.suffix in (".npy", ".npz"):
        loaded = np.load(path)
        array = loaded if isinstance(loaded, np.ndarray) else loaded[loaded.files[0]]
    else:
        import matplotlib.image as mpimg

        image = np.asarray(mpimg.imread(path), dtype=np.float32)
        if image.ndim == 3 and shape[0] == 1:
            image = image[..., :3].mean(-1)  # grey scale for one-channel data
        array = image if image.ndim == 2 else np.moveaxis(image[..., : shape[0]], -1, 0)
        array = array.reshape(1, *shape) if array.size == int(np.prod(shape)) else array
    x = torch.as_tensor(np.asarray(array), dtype=torch.float32)
    if tuple(x.shape) == shape:
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        raise UserError(
            f"--input {spec} has shape {tuple(x.shape)}; the prior's data are (N, *{shape})"
        )
    return x


def _options(items: list[str]) -> dict[str, Any]:
    from ..api.config import parse_scalar

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option must be KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_scalar(value)
    return out


def cmd_inverse(args: argparse.Namespace) -> int:
    from ..api.runs import _device
    from ..inverse import apply_pinv, make_operator, psnr, solve
    from ..plots import plot_image_grid

    torch.manual_seed(args.seed)
    model, info = _prior(args.prior, args.device)
    device = _device(args.device)
    x_data = _read_input(args.input, info, args.prior)
    x = info.normalizer.forward(x_data).to(device)
    operator = make_operator(args.operator, tuple(info.shape), args.noise, args.seed)
    y = operator.measure(x, seed=args.seed)
    method = args.solver.lower().replace("-", "_")
    options = _options(args.option)
    options.setdefault("steps" if method in ("red_diff", "repaint") else "nfe", args.nfe)
    options.setdefault("seed", args.seed)
    if method == "pinv":
        options = {}
    result = solve(model, operator, y, method=method, **options)
    x_hat = result.x.detach()
    baseline = apply_pinv(operator, y).detach()
    data_range = float(x.max() - x.min()) or 1.0
    scores = {
        "psnr": float(psnr(x_hat, x, data_range).mean()),
        "psnr_pinv": float(psnr(baseline, x, data_range).mean()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out / "inverse.npz",
        truth=x_data.numpy(),
        measurement=y.cpu().numpy(),
        pinv=info.normalizer.inverse(baseline.cpu()).numpy(),
        reconstruction=info.normalizer.inverse(x_hat.cpu()).numpy(),
    )
    meta = {
        "prior": args.prior,
        "input": args.input,
        "operator": args.operator,
        "noise": args.noise,
        "solver": method,
        "options": options,
        "seed": args.seed,
        "n": len(x),
        "nfe": result.nfe,
        **scores,
    }
    (args.out / "inverse.json").write_text(json.dumps(meta, indent=2) + "\n")
    written = [args.out / "inverse.npz", args.out / "inverse.json"]
    if len(info.shape) == 3 or int(np.prod(info.shape)) in (64, 256, 784, 1024):
        side = math.isqrt(int(np.prod(info.shape)))
        shape = tuple(info.shape) if len(info.shape) == 3 else (1, side, side)
        rows = [t.cpu().float().reshape(len(x), *shape) for t in (x, baseline, x_hat)]
        low, high = float(x.min()), float(x.max())
        written.append(
            plot_image_grid(
                torch.cat(rows),
                args.out / "inverse.png",
                nrow=len(x),
                value_range=(low, high if high > low else low + 1.0),
                title=f"{method} on {args.operator}",
                row_labels=["truth", "pinv", method],
            )
        )
    print(
        f"{method} on {args.operator} (noise {args.noise}): PSNR {scores['psnr']:.2f} dB "
        f"(pseudo-inverse {scores['psnr_pinv']:.2f} dB) over {len(x)} inputs, "
        f"{result.nfe} model evaluations each"
    )
    for path in written:
        print(f"wrote {path}")
    return 0
