"""Speed helpers for GPUs: replay a network's forward as a CUDA graph.

Sampling at small batch is launch-bound: a DiT forward is hundreds of small kernels, each costing
the host a few microseconds to launch. :class:`CUDAGraphNet` captures the forward once per input
signature (shapes, dtypes, conditioning keys) and afterwards replays it with one launch, copying
the inputs into static buffers. Use it for inference only (no autograd).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .errors import WrongTypeError


class CUDAGraphNet(nn.Module):
    """``net(x, t, **cond)`` replayed from CUDA graphs, one per input signature.

    Tensor keyword arguments are copied into static buffers; any other keyword argument (None,
    numbers) is part of the signature. Outputs are cloned so that later replays do not
    overwrite them. ``autocast`` (e.g. ``torch.bfloat16``) is entered during capture, so the
    replay runs the same mixed-precision kernels.
    """

    def __init__(
        self, net: Callable[..., Tensor], warmup: int = 2, autocast: torch.dtype | None = None
    ):
        super().__init__()
        if not callable(net):
            raise WrongTypeError(f"net must be callable, got {type(net).__name__}")
        self.net = net
        self.warmup = int(warmup)
        self.autocast = autocast
        self._graphs: dict[
            tuple[Any, ...], tuple[torch.cuda.CUDAGraph, dict[str, Tensor], Tensor]
        ] = {}

    @staticmethod
    def _signature(x: Tensor, t: Tensor, cond: dict[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = [tuple(x.shape), x.dtype, x.device, tuple(t.shape), t.dtype]
        for key in sorted(cond):
            v = cond[key]
            parts.append((key, (tuple(v.shape), v.dtype) if isinstance(v, Tensor) else v))
        return tuple(parts)

    def _call(self, inputs: dict[str, Any]) -> Tensor:
        x, t = inputs["x"], inputs["t"]
        cond = {k: v for k, v in inputs.items() if k not in ("x", "t")}
        if self.autocast is None:
            return self.net(x, t, **cond)
        with torch.autocast("cuda", dtype=self.autocast):
            return self.net(x, t, **cond)

    def _capture(
        self, inputs: dict[str, Any]
    ) -> tuple[torch.cuda.CUDAGraph, dict[str, Tensor], Tensor]:
        static = {k: v.clone() if isinstance(v, Tensor) else v for k, v in inputs.items()}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(self.warmup):  # warm-up outside the graph (allocator, autotuning)
                self._call(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            out = self._call(static)
        return graph, {k: v for k, v in static.items() if isinstance(v, Tensor)}, out

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        if x.device.type != "cuda":
            return self.net(x, t, **cond)
        key = self._signature(x, t, cond)
        inputs = {"x": x, "t": t, **cond}
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static, out = self._graphs[key]
        for name, buffer in static.items():
            buffer.copy_(inputs[name])
        graph.replay()
        return out.clone()
