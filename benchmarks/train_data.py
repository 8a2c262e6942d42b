"""Training throughput and peak memory: streamed data against data held in memory, on CPU.

What is measured: images per second of whole training steps (forward, backward, AdamW, EMA) of
the trainer, and the peak resident memory of the training processes (VmHWM of every rank plus
its DataLoader workers, see ``peak_rss_mb``), for the same model, batch and seed, with the data

* ``memory``: an (N, ...) float32 tensor in memory (the trainer's original path);
* ``npy``: a ``.npy`` file read through a memory map (``ArrayStream``), no workers;
* ``shards``: safetensors shards (``data pack``; uint8 for the images), no workers / 1 worker;
* ``folder``: PNG files decoded on the fly (``ImageFolderStream``) by 1 worker per rank.

Data sets: sklearn's digits (all 1797) upsampled to 1 x 32 x 32 (bilinear), and 10,000
generated 3 x 64 x 64 images (smooth random colour fields: 8 x 8 noise upsampled bicubically,
written as PNGs). Model: the residual MLP of the digits preset (width 256, depth 3) on the
flattened pixels, rectified flow, global batch 64, ``--steps`` timed steps after 3 warm-up steps.
It is a small network, so the data path's share of a step is larger than with a UNet: a harsh
test of the target. Every variant runs in its own process (1 rank, or 2 gloo ranks under
torchrun, each rank ``torch.set_num_threads(1)``); the variants are interleaved over
``--repeats`` rounds and the medians are reported, because the 2-core machine is shared with
other jobs (timings are under load; compare ratios within one run only).

Target (issue 19): streaming within 10% of in-memory throughput. Run
``python benchmarks/train_data.py`` (``--quick``: fewer steps and rounds); results go to
``benchmarks/results/train_data.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "train_data.json"
BATCH = 64
WARMUP = 3
VARIANTS = {
    "digits32": [("memory", 0), ("npy", 0), ("shards", 0), ("shards", 1)],
    "images64": [("memory", 0), ("npy", 0), ("shards", 0), ("shards", 1), ("folder", 1)],
}


# ----------------------------------------------------------------------------- data


def make_digits32(root: Path) -> None:
    from interpolant.data import load_digits
    from interpolant.data.shards import write_shards

    x = load_digits("all").x
    x32 = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    np.save(root / "data.npy", x32.numpy().astype(np.float32))
    write_shards(x32, root / "shards", 512, name="digits32", progress=False)


def make_images64(root: Path, n: int = 10_000) -> None:
    from PIL import Image

    from interpolant.data.shards import write_shards
    from interpolant.data.streaming import ImageFolderStream

    gen = torch.Generator().manual_seed(0)
    folder = root / "png"
    folder.mkdir()
    for start in range(0, n, 500):
        coarse = torch.rand(min(500, n - start), 3, 8, 8, generator=gen)
        fine = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bicubic")
        pixels = (fine.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, img in enumerate(pixels):
            Image.fromarray(img, "RGB").save(folder / f"{start + i:05d}.png")
    reader = ImageFolderStream(folder)
    np.save(root / "data.npy", reader.to_tensor().numpy())
    write_shards(reader, root / "shards", 1000, dtype="uint8", name="images64", progress=False)


# ----------------------------------------------------------------------------- one run


def peak_rss_mb(pid: int | str) -> float:
    """VmHWM (peak resident set) of a process in MB. Not ``ru_maxrss``: Linux keeps that
    across execve, so a child would report its launcher's peak. Touched pages of memory-mapped
    files count (they are reclaimable page cache); a worker's pages shared with its rank count
    twice, so the sum over processes is an upper bound."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # the process ended
        pass
    return 0.0


def child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def worker(args: argparse.Namespace) -> None:
    """One training run (one rank under torchrun); each rank writes its figures as JSON."""
    torch.set_num_threads(1)
    from interpolant.data import load_array
    from interpolant.data.streaming import ArrayStream, ImageFolderStream, open_stream
    from interpolant.train import TrainConfig, Trainer
    from interpolant.train.build import build_network, build_objective

    root = Path(args.data)
    data: Any
    if args.variant == "memory":
        data = load_array(root / "data.npy").x
    elif args.variant == "npy":
        data = ArrayStream(root / "data.npy")
    elif args.variant == "shards":
        data = open_stream(root / "shards")
    else:
        data = ImageFolderStream(root / "png")
    dim = int(np.prod(data.shape[1:]))
    cfg = TrainConfig.from_dict(
        dict(
            model={"name": "mlp", "dim": dim, "width": 256, "depth": 3},
            run_dir=args.run_dir,
            device="cpu",
            steps=WARMUP + args.steps,
            batch_size=BATCH,
            lr=1e-3,
            checkpoint_every=10_000,
            log_every=10_000,
            progress=False,
            num_workers=args.workers,
        )
    )
    times: dict[int, float] = {}
    worker_peaks: dict[int, float] = {}

    def hook(trainer: Trainer, step: int) -> None:
        times[step] = time.perf_counter()
        for pid in child_pids():  # DataLoader workers, while they live
            worker_peaks[pid] = max(worker_peaks.get(pid, 0.0), peak_rss_mb(pid))

    net = build_network(cfg)
    trainer = Trainer(net, build_objective(cfg, net.path), data, cfg, step_hook=hook)
    trainer.run()
    trainer.close()
    seconds = times[WARMUP + args.steps] - times[WARMUP]
    row = {
        "rank": trainer.info.rank,
        "images_per_s": args.steps * BATCH / seconds,
        "peak_rss_mb": peak_rss_mb("self") + sum(worker_peaks.values()),
    }
    # One file per rank: two ranks printing at once would interleave their lines.
    (Path(args.run_dir) / f"result-{trainer.info.rank}.json").write_text(json.dumps(row))


def run_variant(data: Path, variant: str, workers: int, world: int, steps: int) -> dict:
    """Launch one run (1 process or torchrun with ``world`` ranks); images/s of rank 0 (all
    ranks step together), peak memory summed over ranks."""
    with tempfile.TemporaryDirectory() as run_dir:
        me = [str(Path(__file__).resolve()), "--worker", "--data", str(data)]
        me += ["--variant", variant, "--workers", str(workers), "--steps", str(steps)]
        me += ["--run-dir", run_dir]
        if world == 1:
            cmd = [sys.executable, *me]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={world}", *me]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} x{world} failed:\n{proc.stderr[-3000:]}")
        rows = [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob("result-*.json"))]
    rank0 = next(r for r in rows if r["rank"] == 0)
    return {
        "images_per_s": rank0["images_per_s"],
        "peak_rss_mb": sum(r["peak_rss_mb"] for r in rows),
    }


def fetch_costs(root: Path, variants: list[tuple[str, int]], rounds: int = 30) -> dict:
    """Milliseconds to read one micro-batch of BATCH random rows, per reader, in this process
    with one thread (median of ``rounds``, interleaved): the data path's own cost, much less
    noisy than whole training runs on a shared machine."""
    from interpolant.data import load_array
    from interpolant.data.streaming import ArrayStream, ImageFolderStream, open_stream

    torch.set_num_threads(1)
    readers: dict[str, Any] = {}
    for variant, _ in variants:
        if variant == "memory":
            x = load_array(root / "data.npy").x
            readers[variant] = lambda idx, x=x: x[torch.as_tensor(idx)]
        elif variant == "npy":
            readers[variant] = ArrayStream(root / "data.npy").fetch
        elif variant == "shards":
            readers[variant] = open_stream(root / "shards").fetch
        else:
            readers[variant] = ImageFolderStream(root / "png").fetch
    n = len(np.load(root / "data.npy", mmap_mode="r"))
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {v: [] for v in readers}
    for _ in range(rounds):
        idx = rng.choice(n, BATCH, replace=False)
        for variant, read in readers.items():
            t0 = time.perf_counter()
            read(idx)
            times[variant].append((time.perf_counter() - t0) * 1e3)
    return {v: round(statistics.median(t), 3) for v, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 steps, 1 round")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2], help="process counts")
    parser.add_argument("--sets", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--fetch-only",
        action="store_true",
        help="only the per-batch read costs, merged into an existing --out file",
    )
    # One training run (internal).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    steps, repeats = (10, 1) if args.quick else (args.steps, args.repeats)
    from tqdm import tqdm

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for name in args.sets:
            roots[name] = Path(tmp) / name
            roots[name].mkdir()
            t0 = time.perf_counter()
            (make_digits32 if name == "digits32" else make_images64)(roots[name])
            print(f"made {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        fetch = {name: fetch_costs(roots[name], VARIANTS[name]) for name in args.sets}
        if args.fetch_only:
            out = json.loads(args.out.read_text())
            out["fetch_ms_per_batch"] = fetch
            args.out.write_text(json.dumps(out, indent=1) + "\n")
            print(json.dumps(fetch, indent=1))
            return
        runs = [
            (s, v, w, world) for s in args.sets for v, w in VARIANTS[s] for world in args.worlds
        ]
        measured: dict[tuple, list[dict]] = {r: [] for r in runs}
        bar = tqdm(total=len(runs) * repeats, desc="runs")
        for _ in range(repeats):  # interleaved: a slow spell of the machine hits every variant
            for run in runs:
                s, v, w, world = run
                measured[run].append(run_variant(roots[s], v, w, world, steps))
                bar.update(1)
        bar.close()
    for (s, v, w, world), rows in measured.items():
        ips = statistics.median(r["images_per_s"] for r in rows)
        rss = statistics.median(r["peak_rss_mb"] for r in rows)
        base = statistics.median(r["images_per_s"] for r in measured[(s, "memory", 0, world)])
        key = f"{s}/{v}{'+1 worker' if w else ''}/{world} proc"
        results[key] = {
            "set": s,
            "variant": v,
            "workers_per_rank": w,
            "processes": world,
            "images_per_s": round(ips, 1),
            "images_per_s_runs": [round(r["images_per_s"], 1) for r in rows],
            "throughput_vs_memory": round(ips / base, 3),
            "within_10_percent": ips >= 0.9 * base,
            "peak_rss_mb": round(rss, 1),
        }
        print(f"{key:34s} {ips:8.1f} img/s  x{ips / base:5.2f} of memory  peak RSS {rss:7.1f} MB")
    out = {
        "benchmark": "train_data",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": {
            "batch": BATCH,
            "steps": steps,
            "warmup": WARMUP,
            "repeats": repeats,
            "model": "mlp width 256 depth 3",
            "threads_per_rank": 1,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "note": "2-core machine shared with other jobs: timings under load; medians over "
        "interleaved rounds",
        "results": results,
        "fetch_ms_per_batch": fetch,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
