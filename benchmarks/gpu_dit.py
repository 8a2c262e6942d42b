"""GPU benchmark: DiT training and sampling throughput, ours against diffusers in the same run.

One prepared script for one GPU session (issue 20): DiT-B/2 at batch 256 and DiT-XL/2 at batch
128 on 32x32x4 latents with 1000 classes, bf16 autocast, float32 master weights, fused AdamW (the
same optimizer for both); ours reference, ours fused (``DiT(fused=True)``: one adaLN GEMM for all
blocks, fused norm + modulate) and diffusers' ``DiTTransformer2DModel``; eager and
``torch.compile``; FP8 (torchao) on Hopper; sampling at batch 1 / 64 / 256; a profiler summary of
where a training step's time goes; a host-sync check; bf16-vs-fp8 loss curves.

Timing: CUDA-event medians over ``--iters`` steps after warm-up (perf_counter on the CPU). MFU:
``mfu_true`` counts real FLOPs (a multiply-add is 2, ``models.flops_per_forward``), x3 for a
training step, against a dense bf16 peak of 989 TFLOP/s (H100/H200 SXM datasheet);
``mfu_paper`` is the DiT paper's fvcore convention (multiply-adds), half of that.

Every measurement is written to the JSON the moment it is taken, stages run cheapest and most
important first, and ``--budget-s`` skips the stages that would not finish: a run cut short keeps
what it measured.

    python benchmarks/gpu_dit.py --out $OUT/gpu_dit.json          # on the GPU (about 8 minutes)
    python benchmarks/gpu_dit.py --smoke --out /tmp/smoke.json    # CPU end-to-end check, tiny sizes
    python benchmarks/gpu_dit.py --table benchmarks/results/gpu_dit.json   # the README table
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PEAK_BF16 = 989e12
# (depth, heads, head_dim) of the sizes measured; --smoke replaces them by a tiny one.
SIZES = {"s": (12, 6, 64), "b": (12, 12, 64), "xl": (28, 16, 72), "tiny": (2, 2, 16)}


class Bench:
    """Device, timer and the JSON record."""

    def __init__(self, out: Path, smoke: bool, budget_s: float) -> None:
        self.out, self.smoke, self.budget_s, self.t0 = out, smoke, budget_s, time.time()
        self.device = torch.device("cpu" if smoke else "cuda")
        self.data: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__,
            "device": "cpu (smoke)" if smoke else torch.cuda.get_device_name(),
            "python": platform.python_version(),
            "smoke": smoke,
            "results": {},
        }
        try:
            import diffusers

            self.data["diffusers"] = diffusers.__version__
        except ImportError:
            self.data["diffusers"] = None
        self.flush()

    def left_s(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def add(self, name: str, value: dict[str, Any]) -> None:
        self.data["results"][name] = value
        print(name, json.dumps({k: v for k, v in value.items() if k != "trace"}), flush=True)
        self.flush()

    def flush(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=2))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any], warmup: int, iters: int) -> float:
        """Median seconds per call of ``fn`` after ``warmup`` calls."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(iters):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2]

    def guarded(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        """Run one measurement; an error is recorded and the run goes on."""
        try:
            self.add(name, fn())
        except Exception as exc:
            self.add(
                name,
                {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]},
            )
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def build(kind: str, size: str) -> torch.nn.Module:
    """Our DiT (reference or fused) or diffusers' DiT of the same size."""
    depth, heads, head_dim = SIZES[size]
    if kind == "diffusers":
        from diffusers import DiTTransformer2DModel

        return DiTTransformer2DModel(
            num_attention_heads=heads,
            attention_head_dim=head_dim,
            in_channels=4,
            num_layers=depth,
            sample_size=32,
            patch_size=2,
            num_embeds_ada_norm=1000,
        )
    from interpolant.models import DiT

    return DiT(
        image_size=32,
        in_channels=4,
        patch_size=2,
        depth=depth,
        hidden_size=heads * head_dim,
        num_heads=heads,
        num_classes=1000,
        fused=kind in ("fused", "fp8"),
    )


def train_step(
    bench: Bench, kind: str, net: torch.nn.Module, batch: int, compile_opt: bool
) -> Callable[[], torch.Tensor]:
    """One optimisation step on fixed random latents: ours through our Objective (rectified
    flow, logit-normal t), diffusers with its DDPM recipe (add_noise, eps MSE)."""
    dev = bench.device
    x0 = torch.randn(batch, 4, 32, 32, device=dev)
    labels = torch.randint(0, 1000, (batch,), device=dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=dev.type == "cuda")
    if kind == "diffusers":
        from diffusers import DDPMScheduler

        sched = DDPMScheduler(num_train_timesteps=1000)
        sched.alphas_cumprod = sched.alphas_cumprod.to(dev)

        def loss_fn() -> torch.Tensor:
            t = torch.randint(0, 1000, (batch,), device=dev)
            noise = torch.randn_like(x0)
            out = net(sched.add_noise(x0, noise, t), timestep=t, class_labels=labels).sample
            return torch.nn.functional.mse_loss(out.float(), noise)

    else:
        import interpolant as ip
        from interpolant.losses import LogitNormal, Objective

        path = ip.paths.Linear()
        model = ip.Model(net, path, predicts="velocity")
        objective = Objective(path, target="velocity", time=LogitNormal(0.0, 1.0))

        def loss_fn() -> torch.Tensor:
            return objective.loss(model, x0, cond={"class_labels": labels})

    opt_step = torch.compile(opt.step) if compile_opt else opt.step

    def step() -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = loss_fn()
        loss.backward()
        opt_step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def real_flops(size: str, batch: int) -> float:
    """Real FLOPs of one forward of our DiT at this size, counted on the meta device (diffusers'
    DiT is the same architecture; its per-block label embeddings add no matmul of note)."""
    from interpolant.models import flops_per_forward

    with torch.device("meta"):
        net = build("ours", size)
        x, t = torch.empty(batch, 4, 32, 32), torch.empty(batch)
        labels = torch.zeros(batch, dtype=torch.long)
    return float(flops_per_forward(net.eval(), (x, t), {"class_labels": labels}))


def bench_train(bench: Bench, kind: str, size: str, batch: int, mode: str, iters: int) -> None:
    """mode: eager | compile | compile-max (max-autotune without CUDA graphs) | compile-graph
    (max-autotune with CUDA graphs; the optimizer step compiled too)."""

    def run() -> dict[str, Any]:
        torch.manual_seed(0)
        net = build(kind, size).to(bench.device).train()
        flops = real_flops(size, batch)
        if kind == "fp8":
            from interpolant.train.precision import convert_to_fp8

            convert_to_fp8(net, bench.device, emulate=bench.smoke)
        if mode != "eager":
            net.compile(
                mode={
                    "compile": None,
                    "compile-max": "max-autotune-no-cudagraphs",
                    "compile-graph": "max-autotune",
                }[mode]
            )
        step = train_step(bench, kind, net, batch, compile_opt=mode == "compile-graph")
        t0 = time.time()
        step()
        first = time.time() - t0
        sec = bench.timed(step, warmup=3, iters=iters)
        img_s = batch / sec
        return {
            "img_per_s": img_s,
            "ms_per_step": sec * 1e3,
            "first_step_s": first,
            "mfu_true": img_s / batch * 3 * flops / PEAK_BF16,
            "mfu_paper": img_s / batch * 1.5 * flops / PEAK_BF16,
            "params": sum(p.numel() for p in net.parameters()),
        }

    bench.guarded(f"train/{kind}/dit-{size}-2/b{batch}/{mode}", run)


def bench_sample(
    bench: Bench, kind: str, size: str, batch: int, mode: str, steps: int = 20
) -> None:
    """20-step class-conditional sampling under bf16 autocast; mode eager, graph (a CUDA graph
    of the eager forward) or compile-graph (torch.compile, then a CUDA graph)."""

    def run() -> dict[str, Any]:
        torch.manual_seed(0)
        net = build(kind, size).to(bench.device).eval()
        dev = bench.device
        noise = torch.randn(batch, 4, 32, 32, device=dev)
        labels = torch.randint(0, 1000, (batch,), device=dev)
        if kind == "diffusers":
            from diffusers import DDIMScheduler

            sched = DDIMScheduler(num_train_timesteps=1000)

            def sample() -> None:
                sched.set_timesteps(steps)
                x = noise
                with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
                    for t in sched.timesteps:
                        eps = net(x, timestep=t.expand(batch).to(dev), class_labels=labels).sample
                        x = sched.step(eps, t, x).prev_sample

        else:
            import interpolant as ip
            from interpolant.accel import CUDAGraphNet

            fwd: Any = torch.compile(net) if mode.startswith("compile") else net
            if mode.endswith("graph"):
                fwd = CUDAGraphNet(fwd, autocast=torch.bfloat16)
            model = ip.Model(fwd, ip.paths.Linear(), predicts="velocity")
            spec = ip.Sampler("euler", steps=steps, grid="uniform")

            def sample() -> None:
                with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
                    ip.sample(model, noise, spec, cond={"class_labels": labels})

        t0 = time.time()
        sample()
        first = time.time() - t0
        sec = bench.timed(sample, warmup=1, iters=5 if batch > 1 else 10)
        return {"img_per_s": batch / sec, "ms_per_step": sec / steps * 1e3, "first_run_s": first}

    bench.guarded(f"sample/{kind}/dit-{size}-2/b{batch}/{mode}", run)


def profile_step(bench: Bench, kind: str, size: str, batch: int) -> None:
    """Where one eager training step's time goes, by kernel family, from torch.profiler."""

    def run() -> dict[str, Any]:
        from torch.profiler import ProfilerActivity, profile

        net = build(kind, size).to(bench.device).train()
        step = train_step(bench, kind, net, batch, compile_opt=False)
        for _ in range(3):
            step()
        bench.sync()
        activities = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if bench.device.type == "cuda" else []
        )
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(3):
                step()
            bench.sync()
            wall = (time.perf_counter() - t0) / 3
        families = {
            "matmul": 0.0,
            "attention": 0.0,
            "norm_modulate_elementwise": 0.0,
            "optimizer": 0.0,
            "other": 0.0,
        }
        on_device = bench.device.type == "cuda"
        for event in prof.key_averages():
            us = event.self_device_time_total if on_device else event.self_cpu_time_total
            if on_device and event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            name = event.key.lower()
            if any(
                k in name
                for k in ("gemm", "matmul", "cutlass", "xmma", "addmm", "mm_", "linear", "conv")
            ):
                families["matmul"] += us
            elif any(k in name for k in ("flash", "fmha", "attention", "efficient")):
                families["attention"] += us
            elif any(k in name for k in ("adam", "foreach", "multi_tensor")):
                families["optimizer"] += us
            elif any(
                k in name
                for k in ("norm", "elementwise", "mul", "add", "silu", "gelu", "cat", "copy")
            ):
                families["norm_modulate_elementwise"] += us
            else:
                families["other"] += us
        busy_ms = {k: v / 3 / 1e3 for k, v in families.items()}
        out: dict[str, Any] = {"wall_ms_per_step": wall * 1e3, "busy_ms_per_step": busy_ms}
        if on_device:
            out["launch_gaps_ms_per_step"] = max(0.0, wall * 1e3 - sum(busy_ms.values()))
        out["top_kernels"] = [
            (
                e.key[:80],
                round((e.self_device_time_total if on_device else e.self_cpu_time_total) / 3e3, 3),
            )
            for e in sorted(
                prof.key_averages(),
                key=lambda e: -(e.self_device_time_total if on_device else e.self_cpu_time_total),
            )[:15]
        ]
        return out

    bench.guarded(f"profile/{kind}/dit-{size}-2/b{batch}/eager", run)


def sync_check(bench: Bench, kind: str, size: str, batch: int) -> None:
    """Host syncs inside a training step, counted by torch.cuda.set_sync_debug_mode('warn')."""

    def run() -> dict[str, Any]:
        net = build(kind, size).to(bench.device).train()
        step = train_step(bench, kind, net, batch, compile_opt=False)
        step()
        if bench.device.type != "cuda":
            return {"host_syncs_per_step": None, "note": "CUDA only"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message)[:160] for w in caught if "synchroniz" in str(w.message).lower()]
        return {"host_syncs_per_step": len(syncs), "examples": syncs[:5]}

    bench.guarded(f"syncs/{kind}/dit-{size}-2/b{batch}", run)


def loss_curves(bench: Bench, size: str, batch: int, steps: int, png: Path) -> None:
    """bf16 and fp8 training of our fused DiT from the same init on the same data: loss curves."""

    def run() -> dict[str, Any]:
        from interpolant.train.precision import convert_to_fp8

        gen = torch.Generator().manual_seed(0)
        data = torch.randn(batch * 8, 4, 32, 32, generator=gen).to(bench.device)
        curves: dict[str, list[float]] = {}
        for precision in ("bf16", "fp8"):
            torch.manual_seed(0)
            net = build("fused", size).to(bench.device).train()
            if precision == "fp8":
                convert_to_fp8(net, bench.device, emulate=bench.smoke)
            import interpolant as ip
            from interpolant.losses import LogitNormal, Objective

            model = ip.Model(net, ip.paths.Linear(), predicts="velocity")
            objective = Objective(ip.paths.Linear(), target="velocity", time=LogitNormal(0.0, 1.0))
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=bench.device.type == "cuda")
            losses = []
            for i in range(steps):
                rows = data[(i % 8) * batch : (i % 8 + 1) * batch]
                g = torch.Generator(bench.device).manual_seed(i)
                with torch.autocast(bench.device.type, dtype=torch.bfloat16):
                    loss = objective.loss(
                        model,
                        rows,
                        generator=g,
                        cond={
                            "class_labels": torch.zeros(
                                batch, dtype=torch.long, device=bench.device
                            )
                        },
                    )
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            curves[precision] = [float(v) for v in torch.stack(losses).cpu()]
        _plot_curves(curves, png)
        tail = max(1, steps // 10)
        means = {k: sum(v[-tail:]) / tail for k, v in curves.items()}
        return {
            "steps": steps,
            "final_loss_mean_last_10pct": means,
            "png": str(png),
            "curves": curves,
        }

    bench.guarded(f"curves/fused/dit-{size}-2/b{batch}", run)


def _plot_curves(curves: dict[str, list[float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        smooth = torch.tensor(values).unfold(0, min(25, len(values)), 1).mean(1)
        ax.plot(smooth.numpy(), label=name)
    ax.set(xlabel="step", ylabel="loss (running mean of 25)", title="DiT training: bf16 vs fp8")
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def stages(args: argparse.Namespace, bench: Bench) -> list[tuple[float, Callable[[], None]]]:
    """(estimated GPU seconds, stage), most important first."""
    b, xl = ("tiny", "tiny") if args.smoke else ("b", "xl")
    bb, bxl = (4, 2) if args.smoke else (256, 128)
    it = 2 if args.smoke else args.iters
    kinds = ["fused", "diffusers", "ours"] if bench.data["diffusers"] else ["fused", "ours"]
    out: list[tuple[float, Callable[[], None]]] = []
    for kind in kinds:
        out.append((10, lambda k=kind: bench_train(bench, k, b, bb, "eager", it)))
    for kind in kinds:
        out.append((45, lambda k=kind: bench_train(bench, k, b, bb, "compile", it)))
    for kind in kinds[:2]:
        out.append((15, lambda k=kind: bench_train(bench, k, xl, bxl, "eager", max(2, it // 2))))
        out.append((70, lambda k=kind: bench_train(bench, k, xl, bxl, "compile", max(2, it // 2))))
    out.append((50, lambda: bench_train(bench, "fp8", b, bb, "compile", it)))
    out.append((70, lambda: bench_train(bench, "fp8", xl, bxl, "compile", max(2, it // 2))))
    out.append((10, lambda: profile_step(bench, "fused", b, bb)))
    out.append((5, lambda: sync_check(bench, "fused", b, bb)))
    for size, batches in ((b, (1, 256)), (xl, (1, 64))):
        for batch in batches if not args.smoke else (1, 2):
            out.append((5, lambda s=size, n=batch: bench_sample(bench, "fused", s, n, "eager")))
            if bench.data["diffusers"]:
                out.append(
                    (5, lambda s=size, n=batch: bench_sample(bench, "diffusers", s, n, "eager"))
                )
            if not args.smoke:  # CUDA graphs need a GPU
                out.append(
                    (
                        40,
                        lambda s=size, n=batch: bench_sample(bench, "fused", s, n, "compile-graph"),
                    )
                )
    out.append(
        (
            60,
            lambda: loss_curves(
                bench,
                "tiny" if args.smoke else "s",
                8 if args.smoke else 64,
                20 if args.smoke else args.curve_steps,
                Path(args.out).with_name("gpu_dit_loss_bf16_fp8.png"),
            ),
        )
    )
    for kind in kinds[:2]:
        out.append((120, lambda k=kind: bench_train(bench, k, b, bb, "compile-max", it)))
    for kind in kinds[:2]:
        out.append((150, lambda k=kind: bench_train(bench, k, b, bb, "compile-graph", it)))
    return out


def ratios(res: dict[str, Any]) -> dict[str, float | None]:
    def ips(name: str) -> float | None:
        return res.get(name, {}).get("img_per_s")

    def best(prefix: str, modes: tuple[str, ...]) -> float | None:
        values = [v for v in (ips(f"{prefix}/{m}") for m in modes) if v]
        return max(values) if values else None

    compiled = ("compile", "compile-max", "compile-graph")
    out: dict[str, float | None] = {}
    for size, batch in (("b", 256), ("xl", 128), ("tiny", 4), ("tiny", 2)):
        theirs = best(f"train/diffusers/dit-{size}-2/b{batch}", compiled)
        for kind in ("ours", "fused", "fp8"):
            mine = best(f"train/{kind}/dit-{size}-2/b{batch}", compiled)
            if mine and theirs:
                out[f"train_{kind}_{size}_best_compiled_vs_diffusers_best_compiled"] = mine / theirs
        eager = (
            ips(f"train/fused/dit-{size}-2/b{batch}/eager"),
            ips(f"train/diffusers/dit-{size}-2/b{batch}/eager"),
        )
        if all(eager):
            out[f"train_fused_{size}_eager_vs_diffusers_eager"] = eager[0] / eager[1]  # type: ignore[operator]
    return out


def table(path: Path) -> str:
    """The README table from a result JSON."""
    data = json.loads(path.read_text())
    res = data["results"]
    rows = [
        f"Measured on {data['device']}, torch {data['torch']}, "
        f"diffusers {data.get('diffusers')}, {data['date']}.",
        "",
        "| workload | ours (img/s) | diffusers (img/s) | ratio |",
        "|---|---|---|---|",
    ]
    for name, value in res.items():
        parts = name.split("/")
        if (
            parts[0] not in ("train", "sample")
            or parts[1] == "diffusers"
            or "img_per_s" not in value
        ):
            continue
        peer = res.get("/".join([parts[0], "diffusers", *parts[2:]]), {}).get("img_per_s")
        if peer is None and parts[0] == "sample":
            peer = res.get("/".join([parts[0], "diffusers", *parts[2:4], "eager"]), {}).get(
                "img_per_s"
            )
        mfu = f" (MFU {value['mfu_true']:.1%})" if "mfu_true" in value else ""
        ratio = f"{value['img_per_s'] / peer:.2f}" if peer else "-"
        theirs = f"{peer:.1f}" if peer else "-"
        rows.append(
            f"| {parts[0]} {' '.join(parts[2:])} [{parts[1]}] "
            f"| {value['img_per_s']:.1f}{mfu} | {theirs} | {ratio} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/gpu_dit.json")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--curve-steps", type=int, default=2000)
    parser.add_argument(
        "--budget-s", type=float, default=460.0, help="skip stages that would not finish in time"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes on the CPU: checks the script end to end"
    )
    parser.add_argument(
        "--table", type=Path, help="print the README table of a result JSON and exit"
    )
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    if not args.smoke:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bench = Bench(Path(args.out), args.smoke, args.budget_s if not args.smoke else 1e9)
    for estimate, stage in stages(args, bench):
        if bench.left_s() < estimate:
            bench.data.setdefault("skipped", []).append(estimate)
            continue
        stage()
    bench.data["ratios"] = ratios(bench.data["results"])
    bench.data["wall_s"] = time.time() - bench.t0
    bench.flush()
    print(json.dumps(bench.data["ratios"], indent=2))


if __name__ == "__main__":
    main()
