"""Peer libraries for the optional tests (marked ``peers``), skipped when a peer is absent.

The k-diffusion loader lives in ``benchmarks/_peers.py`` so that benchmarks and tests share it
(``import k_diffusion`` needs torchvision and CLIP; its samplers do not). Benchmarks import it as
``_peers`` (their folder is on sys.path when run as scripts); tests load it from its file here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_PEERS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "_peers.py"
_MODULE_NAME = "interpolant_benchmarks_peers"


def benchmark_peers() -> ModuleType:
    """``benchmarks/_peers.py`` as a module (loaded once)."""
    module = sys.modules.get(_MODULE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, _PEERS_FILE)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {_PEERS_FILE}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = module
        spec.loader.exec_module(module)
    return module


def k_diffusion_sampling() -> ModuleType:
    """``k_diffusion.sampling``, or skip the test when k-diffusion (or a dependency of its
    sampling module: scipy, torchdiffeq, torchsde) is missing."""
    try:
        return benchmark_peers().load_k_diffusion_sampling()
    except ImportError as err:
        pytest.skip(f"k-diffusion unavailable: {err}")
