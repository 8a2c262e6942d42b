"""Loaders for peer libraries that cannot be imported the ordinary way.

``import k_diffusion`` fails without torchvision and CLIP (its ``__init__`` imports its
training utilities). The samplers need none of that: :func:`load_k_diffusion_sampling` imports
``k_diffusion/sampling.py`` and ``utils.py`` directly under a bare package module, with empty
stand-ins for the image-only imports of ``utils.py`` that are missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType

#: Imports of k_diffusion/utils.py that only its image/training helpers use.
_IMAGE_ONLY_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _stub_missing(names: tuple[str, ...]) -> list[str]:
    """Register empty modules for the names that cannot be imported (never shadows real ones);
    returns the names stubbed."""
    stubbed = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            parent, _, child = name.rpartition(".")
            module = types.ModuleType(name)
            module.__path__ = []  # type: ignore[attr-defined]
            sys.modules[name] = module
            stubbed.append(name)
            if parent and parent in sys.modules:
                setattr(sys.modules[parent], child, module)
    return stubbed


def load_k_diffusion_sampling() -> ModuleType:
    """``k_diffusion.sampling`` without running ``k_diffusion/__init__.py``.

    Raises ImportError (with the reason) when k-diffusion is not installed.
    """
    existing = sys.modules.get("k_diffusion.sampling")
    if existing is not None:
        return existing
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    root = Path(next(iter(spec.submodule_search_locations)))
    stubbed = _stub_missing(_IMAGE_ONLY_MODULES)
    try:
        if "k_diffusion" not in sys.modules:
            package = types.ModuleType("k_diffusion")
            package.__path__ = [str(root)]  # type: ignore[attr-defined]
            package.__file__ = str(root / "__init__.py")
            package.__spec__ = spec  # so that importlib.util.find_spec("k_diffusion") works
            sys.modules["k_diffusion"] = package
        return importlib.import_module("k_diffusion.sampling")
    finally:
        # The stand-ins must not outlive the import: a stub without __spec__ in sys.modules
        # makes importlib.util.find_spec raise, which breaks e.g. a later `import diffusers`.
        for name in stubbed:
            sys.modules.pop(name, None)


def k_diffusion_version() -> str:
    """The installed k-diffusion version (from its distribution metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("k-diffusion")
    except PackageNotFoundError:
        return "not installed"
