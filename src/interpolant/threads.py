"""How many intra-op CPU threads torch uses: chosen from the model's size and the free cores.

torch's default is one thread per core. For the small networks of the CPU presets that is a
loss: a step of a 46k-parameter MLP is milliseconds of small matmuls, and splitting each over
two threads costs a synchronisation per operation. On a loaded 2-core machine
it is much worse, because a thread that waits for a busy core stalls the other one: 300 steps
of ``toy2d-flow`` took 15 s with one thread and 164 s with two, and 70 s against 411 s under a
load average of 10 (docs/howto/cli.md). The rule, applied by the command line when neither
``--threads`` nor ``OMP_NUM_THREADS`` says otherwise:

* a model with fewer than :data:`SMALL_MODEL_PARAMETERS` parameters gets one thread. Measured
  on the shared 2-core machine (``python benchmarks/threads.py``, training steps of the
  toy2d-flow MLP, benchmarks/results/threads_quiet.json and threads_loaded.json): at a load
  average of 3, two threads were 1.0x (12k parameters), 1.05x (46k), 1.3x (183k) and 1.7x
  (727k) as fast as one; at a load average of 6 they were 26x (46k) and 6.7x (727k) slower,
  and 2.3x slower still at 11.6M. The load moved between 3 and 11 within minutes, so below 1M
  parameters, where the best case gains at most 1.7x and the worst loses 7 to 26x, one thread
  is the safe choice; above it the gain on free cores (1.7 to 1.9x) is worth asking for;
* a larger one gets the free cores: the CPUs this process may run on
  (``os.sched_getaffinity``) less the others' load (the 1-minute load average), shared by the
  ranks of this machine (``LOCAL_WORLD_SIZE`` under torchrun), and at least one.
"""

from __future__ import annotations

import os

import torch
from torch import nn

#: Models below this many parameters train and sample fastest on one intra-op thread.
SMALL_MODEL_PARAMETERS = 1_000_000

#: "auto": :func:`apply_policy` chooses the thread count; "fixed": it leaves torch's setting.
_POLICY = {"mode": "fixed"}


def usable_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores not busy with other work, per rank of this machine: ``cores`` (default: usable
    ones) less the 1-minute load average (``load``) beyond this process, at least 1."""
    cores = usable_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available: assume the machine is ours
            load = 0.0
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    # Called as work starts, before this process weighs in the (lagging) 1-minute average.
    return max(1, round((cores - load) / ranks))


def choose_threads(parameters: int, cores: int | None = None, load: float | None = None) -> int:
    """The intra-op thread count for a model of ``parameters`` (module docstring)."""
    if parameters < SMALL_MODEL_PARAMETERS:
        return 1
    return free_cores(cores, load)


def set_policy(mode: str) -> None:
    """``"auto"``: :func:`apply_policy` sets the thread count from the model (the command line
    does this unless ``--threads`` or ``OMP_NUM_THREADS`` is given); ``"fixed"``: it does
    nothing (the library default, so a program's own ``torch.set_num_threads`` stands)."""
    if mode not in ("auto", "fixed"):
        raise ValueError(f"thread policy must be 'auto' or 'fixed', got {mode!r}")
    _POLICY["mode"] = mode


def get_policy() -> str:
    """The current policy: "auto" or "fixed"."""
    return _POLICY["mode"]


def apply_policy(model: nn.Module) -> int | None:
    """Under the "auto" policy, set torch's intra-op threads for ``model`` on the CPU and
    return the count; otherwise (or for a model on an accelerator) change nothing: None."""
    if _POLICY["mode"] != "auto":
        return None
    devices = {p.device.type for p in model.parameters()}
    if devices and devices != {"cpu"}:
        return None
    threads = choose_threads(sum(p.numel() for p in model.parameters()))
    torch.set_num_threads(threads)
    return threads


__all__ = [
    "SMALL_MODEL_PARAMETERS",
    "apply_policy",
    "choose_threads",
    "free_cores",
    "get_policy",
    "set_policy",
    "usable_cores",
]
