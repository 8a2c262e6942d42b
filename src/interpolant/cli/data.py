"""``interpolant data``: pack a folder of images or an array into safetensors shards, and verify
a shard folder.

  interpolant data pack images/ --out shards/ --channels 3 --size 64 --dtype uint8
  interpolant data pack x.npz --labels-key y --out shards/ --shard-size 8192
  interpolant data pack images/ --out latents/ --encoder vae_dir/      pre-encoded latents
  interpolant data verify shards/

Shards are safetensors files (random access by index, which the trainer's stateless data order
needs; WebDataset tar shards can only be read from their start) with a JSON manifest; train on
them with data.name=shards/ (they always stream; train.num_workers=2 reads ahead).
``--encoder`` is a local folder of a diffusers AutoencoderKL (``save_pretrained``); nothing is
ever downloaded. The latents are the posterior means times the VAE's scaling factor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``data`` subcommand (``pack``, ``verify``) to ``sub``."""
    from ..data.shards import DTYPES

    p = sub.add_parser(
        "data",
        help="pack images or arrays into shards for streaming; verify shards",
        formatter_class=formatter,
        description=__doc__.replace("``", "") if __doc__ else None,
    )
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    pack = actions.add_parser("pack", help="write SOURCE (images folder, .npy, .npz) as shards")
    pack.add_argument("source", type=Path, metavar="FOLDER|FILE", help="images, .npy or .npz")
    pack.add_argument("--out", type=Path, required=True, help="new folder for the shards")
    pack.add_argument("--shard-size", type=int, default=4096, help="samples per shard file")
    pack.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="stored type (default: uint8 for images, else float32)",
    )
    pack.add_argument("--name", help="data set name recorded in the manifest and every shard")
    pack.add_argument("--channels", type=int, choices=(1, 3), default=3, help="images: 1 or 3")
    pack.add_argument("--size", type=int, nargs="+", help="images: resize to N or H W")
    pack.add_argument(
        "--on-bad-image",
        choices=("raise", "skip"),
        default="raise",
        help="images: refuse an undecodable file, or replace it by the next",
    )
    pack.add_argument("--key", help=".npz: the data array")
    pack.add_argument("--labels-key", help=".npz: an (N,) label array")
    pack.add_argument("--encoder", type=Path, help="local diffusers AutoencoderKL folder")
    pack.add_argument("--batch-size", type=int, default=64, help="samples read (encoded) at once")
    pack.add_argument("--device", default="cpu", help="device of the encoder")
    pack.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify = actions.add_parser("verify", help="re-hash every shard against its manifest")
    verify.add_argument("shards", type=Path, metavar="SHARDS")


def load_vae_encoder(folder: Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """``encode(x) -> latents`` of the diffusers AutoencoderKL saved in ``folder`` (posterior
    mean times ``scaling_factor``, as training's ``train.encoder``), and its description for
    the manifest."""
    import torch

    from ..train.latents import vae_codec

    codec = vae_codec(folder, device, key="--encoder")

    @torch.no_grad()
    def encode(x: torch.Tensor) -> torch.Tensor:
        return codec.encode(x)

    encode.__name__ = "AutoencoderKL"
    info = {"kind": "diffusers.AutoencoderKL", "folder": str(folder), "scale": codec.scale}
    return encode, info


def cmd_pack(args: argparse.Namespace) -> int:
    from ..data.shards import write_shards
    from ..data.streaming import open_stream

    source: Path = args.source
    options: dict[str, Any] = {}
    if source.is_dir():
        size = None if args.size is None else args.size[0] if len(args.size) == 1 else args.size
        options = {"channels": args.channels, "size": size, "on_bad_image": args.on_bad_image}
    elif source.suffix.lower() == ".npz":
        options = {"key": args.key, "labels_key": args.labels_key}
    reader = open_stream(source, **options)
    encoder, encoder_info = None, None
    if args.encoder is not None:
        encoder, encoder_info = load_vae_encoder(args.encoder, args.device)
    dtype = args.dtype or ("uint8" if source.is_dir() and encoder is None else "float32")
    out = write_shards(
        reader,
        args.out,
        args.shard_size,
        name=args.name,
        dtype=dtype,
        encoder=encoder,
        encoder_info=encoder_info,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    replaced = getattr(reader, "replaced", {})
    note = f"; {len(replaced)} undecodable images replaced: {sorted(replaced.values())}"
    print(
        f"packed {manifest['n']} samples of shape {tuple(manifest['shape'])} ({dtype}) into "
        f"{len(manifest['shards'])} shards in {out}/{note if replaced else ''}\n"
        f"train on them: interpolant train ... data.name={out} train.num_workers=2"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..data.shards import verify_shards

    manifest = verify_shards(args.shards)
    print(
        f"{args.shards}: {len(manifest['shards'])} shards, {manifest['n']} samples of "
        f"{manifest['name']!r}, contents match the manifest (fingerprint "
        f"{manifest['fingerprint'][:12]})"
    )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``interpolant data ACTION``."""
    if args.data_command == "pack":
        return cmd_pack(args)
    if args.data_command == "verify":
        return cmd_verify(args)
    raise UserError("give an action: interpolant data pack ... or interpolant data verify ...")
