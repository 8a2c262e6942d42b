"""Gradient checkpointing: activation memory and step time with it on and off, DiT, MMDiT, UNet.

Memory is counted exactly, not sampled: the bytes autograd saves for the backward pass (a
``saved_tensors_hooks`` tally), which is what checkpointing removes; on a GPU also
``torch.cuda.max_memory_allocated`` of a whole training step. Step time (forward + backward) is
the median of interleaved repeats, so load on the machine hits both settings alike.

    python benchmarks/checkpointing.py                 # CPU, about a minute
    python benchmarks/checkpointing.py --device cuda   # and peak GPU memory
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from interpolant.models import build_model

NETWORKS: dict[str, dict[str, Any]] = {
    "dit-s/2 (32x32x4)": dict(name="dit-s/2", image_size=32, in_channels=4, num_classes=10),
    "mmdit (32x32x4, depth 8)": dict(
        name="mmdit",
        image_size=32,
        in_channels=4,
        patch_size=2,
        depth=8,
        hidden_size=256,
        num_heads=4,
        context_dim=64,
    ),
    "unet (32x32x3)": dict(
        name="unet", image_size=32, in_channels=3, model_channels=64, channel_mult=(1, 2, 2)
    ),
}


def inputs(config: dict[str, Any], batch: int, device: torch.device) -> tuple[tuple, dict]:
    shape = (batch, config["in_channels"], config["image_size"], config["image_size"])
    x, t = torch.randn(shape, device=device), torch.rand(batch, device=device)
    cond: dict[str, Any] = {}
    if config.get("num_classes"):
        cond["class_labels"] = torch.zeros(batch, dtype=torch.long, device=device)
    if "context_dim" in config:
        cond["context"] = torch.randn(batch, 16, config["context_dim"], device=device)
    return (x, t), cond


def saved_bytes(net: torch.nn.Module, args: tuple, cond: dict) -> int:
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(*args, **cond).square().mean()
    return total


def step(net: torch.nn.Module, args: tuple, cond: dict) -> None:
    net.zero_grad(set_to_none=True)
    net(*args, **cond).square().mean().backward()


def measure(
    name: str, config: dict[str, Any], batch: int, repeats: int, device: torch.device
) -> dict:
    torch.manual_seed(0)
    net = build_model(**config).to(device).train()
    args, cond = inputs(config, batch, device)
    row: dict[str, Any] = {"batch": batch, "params": sum(p.numel() for p in net.parameters())}
    times: dict[bool, list[float]] = {False: [], True: []}
    for on in (False, True):
        net.set_gradient_checkpointing(on)
        row[f"saved_mb_{'on' if on else 'off'}"] = saved_bytes(net, args, cond) / 2**20
        step(net, args, cond)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            step(net, args, cond)
            row[f"peak_mb_{'on' if on else 'off'}"] = torch.cuda.max_memory_allocated() / 2**20
    for _ in range(repeats):
        for on in (False, True):
            net.set_gradient_checkpointing(on)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(net, args, cond)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[on].append(time.perf_counter() - t0)
    off, on_ = (sorted(v)[len(v) // 2] for v in (times[False], times[True]))
    row.update(
        step_ms_off=off * 1e3,
        step_ms_on=on_ * 1e3,
        time_ratio_on_off=on_ / off,
        saved_ratio_on_off=row["saved_mb_on"] / row["saved_mb_off"],
    )
    print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/checkpointing.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    rows = {n: measure(n, c, args.batch, args.repeats, device) for n, c in NETWORKS.items()}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": args.device if device.type == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "threads": 1,
        "note": "CPU timings on a shared, loaded 2-core machine: ratios of interleaved medians",
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
