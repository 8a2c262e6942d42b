"""Checks of what a run is handed, before anything is loaded or written: the options a data
loader takes (``data.options``) and whether a checkpoint belongs to a run folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..configurable import keyword_names, refuse_unknown
from ..train import TrainConfig, network_spec
from ..train import checkpoint as ckpt
from .config import RunConfig

#: The file of a run folder that holds its four config sections.
RUN_CONFIG = "run_config.json"


def data_loader(name: str) -> tuple[Callable[..., Any], tuple[str, ...]] | None:
    """The function that receives ``data.options`` for the data ``name``, and its arguments
    that are not options (None for a name that is neither registered nor an existing path)."""
    from ..data import files
    from ..data.digits import load_digits
    from ..data.oracles import ORACLES
    from ..data.registry import DATASETS
    from ..data.toy import TOY_SETS

    if name in TOY_SETS:
        return TOY_SETS[name], ("n", "generator")
    if name in ORACLES:
        return ORACLES[name], ()
    if name == "digits":
        return load_digits, ("split",)
    if name in DATASETS or not Path(name).exists():
        return None
    path = Path(name)
    if path.is_dir():
        return files.load_image_folder, ("folder",)
    if path.suffix.lower() in files.ARRAY_SUFFIXES:
        return files.load_array, ("path",)
    if path.suffix.lower() in files.TABLE_SUFFIXES:
        return files.load_csv, ("path",)
    return None


def check_belongs(root: Path, path: Path, state: dict[str, Any]) -> None:
    """Refuse a checkpoint whose network (backbone, path, prediction kind, preconditioning) or
    data shape differ from the run's: its run_config.json and its own newest checkpoint."""
    own = [p / ckpt.STATE_FILE for _, p in ckpt.list_checkpoints(root / "checkpoints")]
    own_state = next((json.loads(f.read_text()) for f in reversed(own) if f.is_file()), None)
    config_file = root / RUN_CONFIG
    if config_file.is_file():
        run_train = RunConfig.from_dict(json.loads(config_file.read_text())).train
    elif own_state is not None:
        run_train = TrainConfig.from_dict(own_state["config"])
    else:
        return  # a folder with neither: nothing to compare with
    saved = network_spec(TrainConfig.from_dict(state["config"]))
    where = f"in {root}"
    try:
        ckpt.check_network(path, saved, network_spec(run_train), "train.", where)
        if own_state is not None:
            ckpt.check_data_shape(path, state.get("data", {}), own_state.get("data", {}), where)
    except ckpt.CheckpointError as err:
        raise ckpt.CheckpointError(
            f"{err} (it is not a checkpoint of {root}; nothing was written: give its own run "
            "folder, or a checkpoint of this run)"
        ) from None


def check_data_options(name: str, options: dict[str, Any]) -> None:
    """Refuse ``data.options`` keys the loader of ``name`` does not take, listing its options."""
    loader = data_loader(name)
    if loader is not None:
        fn, fixed = loader
        refuse_unknown(repr(name), options, keyword_names(fn, fixed), key="data.options")


__all__ = ["check_belongs", "check_data_options", "data_loader"]
