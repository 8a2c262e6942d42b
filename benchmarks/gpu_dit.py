"""GPU benchmark: DiT training and sampling throughput, ours against diffusers in the same run.

Settings of the issue: DiT-B/2 on 32x32x4 latents, 1000 classes, batch 256, bf16 autocast, fused
AdamW; DiT-XL/2 at batch 128 (eager); sampling 20 steps at batch 256 and batch 1.

MFU is reported two ways: ``mfu_issue`` counts 3 x 23.01 "GFLOPs" per training image, the DiT
paper's fvcore count (which counts a multiply-add once), as the issue does; ``mfu_true`` counts
real FLOPs (a multiply-add is 2) measured by ``models.flops_per_forward``. Both against a dense
bf16 peak of 989 TFLOP/s (H100/H200 SXM datasheet).

Run on a GPU machine:  PYTHONPATH=src python benchmarks/gpu_dit.py --out results.json
Every measurement is appended to the JSON as soon as it is taken, so a run cut short keeps what
it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PEAK_BF16 = 989e12
DIT_B2_PAPER_GFLOPS = 23.01  # fvcore count (multiply-adds) per image forward
DIT_XL2_PAPER_GFLOPS = 118.64


def timed(fn: Callable[[], Any], warmup: int, iters: int) -> float:
    """Median seconds per call over ``iters`` calls, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    times.sort()
    return times[len(times) // 2]


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(),
            "python": platform.python_version(),
            "results": {},
        }
        try:
            import diffusers

            self.data["diffusers"] = diffusers.__version__
        except ImportError:
            self.data["diffusers"] = None
        self.flush()

    def add(self, name: str, value: dict[str, Any]) -> None:
        self.data["results"][name] = value
        print(name, json.dumps(value), flush=True)
        self.flush()

    def flush(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2))


def ours_dit(size: str) -> torch.nn.Module:
    from interpolant.models import build_model

    return build_model(f"dit-{size}/2", image_size=32, in_channels=4, num_classes=1000)


def diffusers_dit(size: str) -> torch.nn.Module:
    from diffusers import DiTTransformer2DModel

    heads, head_dim, layers = {"b": (12, 64, 12), "xl": (16, 72, 28)}[size]
    return DiTTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        num_layers=layers,
        sample_size=32,
        patch_size=2,
        num_embeds_ada_norm=1000,
    )


def train_step_fn(kind: str, net: torch.nn.Module, batch: int) -> Callable[[], None]:
    """One optimisation step on random latents: ours through our Objective (rectified flow,
    logit-normal t), diffusers with its DDPM recipe (add_noise, eps MSE)."""
    x0 = torch.randn(batch, 4, 32, 32, device="cuda")
    labels = torch.randint(0, 1000, (batch,), device="cuda")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    if kind == "ours":
        import interpolant as ip
        from interpolant.losses import LogitNormal, Objective

        path = ip.paths.Linear()
        model = ip.Model(net, path, predicts="velocity")
        objective = Objective(path, target="velocity", time=LogitNormal(0.0, 1.0))

        def loss_fn() -> torch.Tensor:
            return objective.loss(model, x0, cond={"class_labels": labels})

    else:
        from diffusers import DDPMScheduler

        sched = DDPMScheduler(num_train_timesteps=1000)
        sched.alphas_cumprod = sched.alphas_cumprod.to("cuda")

        def loss_fn() -> torch.Tensor:
            t = torch.randint(0, 1000, (batch,), device="cuda")
            noise = torch.randn_like(x0)
            x_t = sched.add_noise(x0, noise, t)
            out = net(x_t, timestep=t, class_labels=labels).sample
            return torch.nn.functional.mse_loss(out.float(), noise)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def bench_train(
    rec: Recorder, kind: str, size: str, batch: int, compile_: bool, iters: int
) -> None:
    name = f"train/{kind}/dit-{size}-2/b{batch}/{'compile' if compile_ else 'eager'}"
    try:
        torch.manual_seed(0)
        net = (ours_dit if kind == "ours" else diffusers_dit)(size).cuda().train()
        if compile_:
            net.compile()  # in place: parameter names (and checkpoints) stay the same
        step = train_step_fn(kind, net, batch)
        t0 = time.time()
        step()
        first = time.time() - t0
        sec = timed(step, warmup=3, iters=iters)
        img_s = batch / sec
        paper = DIT_B2_PAPER_GFLOPS if size == "b" else DIT_XL2_PAPER_GFLOPS
        rec.add(
            name,
            {
                "img_per_s": img_s,
                "ms_per_step": sec * 1e3,
                "first_step_s": first,
                "mfu_issue": img_s * 3 * paper * 1e9 / PEAK_BF16,
                "mfu_true": img_s * 3 * 2 * paper * 1e9 / PEAK_BF16,
                "params": sum(p.numel() for p in net.parameters()),
            },
        )
        del net, step
    except Exception as exc:  # record and go on: one failure must not lose the other numbers
        rec.add(
            name, {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        )
    torch.cuda.empty_cache()


def bench_sample(rec: Recorder, kind: str, batch: int, mode: str, steps: int = 20) -> None:
    """20-step class-conditional sampling under bf16 autocast; mode eager, graph (CUDA graph of
    the eager forward) or compile-graph (torch.compile, then a CUDA graph)."""
    name = f"sample/{kind}/dit-b-2/b{batch}/{mode}"
    try:
        torch.manual_seed(0)
        net = (ours_dit if kind == "ours" else diffusers_dit)("b").cuda().eval()
        noise = torch.randn(batch, 4, 32, 32, device="cuda")
        labels = torch.randint(0, 1000, (batch,), device="cuda")
        if kind == "ours":
            import interpolant as ip
            from interpolant.accel import CUDAGraphNet

            fwd: Any = net
            if mode.startswith("compile"):
                fwd = torch.compile(net)
            if mode.endswith("graph"):
                fwd = CUDAGraphNet(fwd, autocast=torch.bfloat16)
            model = ip.Model(fwd, ip.paths.Linear(), predicts="velocity")

            def run() -> None:
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    ip.sample(
                        model,
                        noise,
                        solver="euler",
                        steps=steps,
                        grid="uniform",
                        cond={"class_labels": labels},
                    )

        else:
            from diffusers import DDIMScheduler

            sched = DDIMScheduler(num_train_timesteps=1000)

            def run() -> None:
                sched.set_timesteps(steps)
                x = noise
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    for t in sched.timesteps:
                        eps = net(x, timestep=t.expand(batch).cuda(), class_labels=labels).sample
                        x = sched.step(eps, t, x).prev_sample

        t0 = time.time()
        run()
        first = time.time() - t0
        sec = timed(run, warmup=1, iters=5 if batch > 1 else 10)
        rec.add(
            name, {"img_per_s": batch / sec, "ms_per_step": sec / steps * 1e3, "first_run_s": first}
        )
    except Exception as exc:
        rec.add(
            name, {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        )
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/gpu_dit.json")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--only", default="", help="comma list of: train, xl, sample")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rec = Recorder(Path(args.out))
    have_diffusers = rec.data["diffusers"] is not None
    kinds = ["ours", "diffusers"] if have_diffusers else ["ours"]
    only = set(filter(None, args.only.split(",")))
    # Cheapest first, compiles later, CUDA graphs last (a failed capture poisons the CUDA RNG
    # for the rest of the process): a run cut short keeps the most.
    if not only or "train" in only:
        for kind in kinds:
            bench_train(rec, kind, "b", 256, False, args.iters)
    if not only or "sample" in only:
        for batch in (1, 256):
            for kind in kinds:
                bench_sample(rec, kind, batch, "eager")
    if not args.skip_compile and (not only or "train" in only):
        for kind in kinds:
            bench_train(rec, kind, "b", 256, True, args.iters)
    if not only or "xl" in only:
        for kind in kinds:
            bench_train(rec, kind, "xl", 128, False, max(5, args.iters // 2))
    if not only or "sample" in only:
        for batch in (1, 256):
            bench_sample(rec, "ours", batch, "graph")
            if not args.skip_compile:
                bench_sample(rec, "ours", batch, "compile-graph")
    res = rec.data["results"]

    def ratio(a: str, b: str) -> float | None:
        if "img_per_s" in res.get(a, {}) and "img_per_s" in res.get(b, {}):
            return res[a]["img_per_s"] / res[b]["img_per_s"]
        return None

    rec.data["ratios"] = {
        "train_b2_eager": ratio(
            "train/ours/dit-b-2/b256/eager", "train/diffusers/dit-b-2/b256/eager"
        ),
        "train_b2_compile": ratio(
            "train/ours/dit-b-2/b256/compile", "train/diffusers/dit-b-2/b256/compile"
        ),
        "sample_b1_best_vs_diffusers": max(
            (ratio(f"sample/ours/dit-b-2/b1/{m}", "sample/diffusers/dit-b-2/b1/eager") or 0)
            for m in ("eager", "graph", "compile-graph")
        ),
        "sample_b256_best_vs_diffusers": max(
            (ratio(f"sample/ours/dit-b-2/b256/{m}", "sample/diffusers/dit-b-2/b256/eager") or 0)
            for m in ("eager", "graph", "compile-graph")
        ),
    }
    rec.flush()
    print(json.dumps(rec.data["ratios"], indent=2))


if __name__ == "__main__":
    main()
