"""Data: analytic oracles, toy sets, digits and the user's own arrays and images, in memory or
streamed from disk (memory maps, image folders, safetensors shards)."""

from .base import DataInfo, LoadedData, holdout_indices
from .digits import DIGITS_N_TEST, load_digits
from .files import load_array, load_csv, load_files, load_image_folder, read_image
from .oracles import (
    ORACLES,
    GaussianMixture,
    as_gaussian,
    fit_gaussian,
    lowrank64,
    ring2d,
    three_modes,
)
from .registry import DATASETS, DatasetSpec, load_dataset, split_generator
from .shards import ShardStream, read_manifest, verify_shards, write_shards
from .stats import Normalizer, channel_stats, estimate_sigma_data
from .streaming import ArrayStream, ImageFolderStream, StreamingDataset, TensorStream, open_stream
from .toy import TOY_SETS, checkerboard, circles, eight_gaussians, moons, swiss_roll

__all__ = [
    "DATASETS",
    "DIGITS_N_TEST",
    "ORACLES",
    "TOY_SETS",
    "ArrayStream",
    "DataInfo",
    "DatasetSpec",
    "GaussianMixture",
    "ImageFolderStream",
    "LoadedData",
    "Normalizer",
    "ShardStream",
    "StreamingDataset",
    "TensorStream",
    "as_gaussian",
    "channel_stats",
    "checkerboard",
    "circles",
    "eight_gaussians",
    "estimate_sigma_data",
    "fit_gaussian",
    "holdout_indices",
    "load_array",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_files",
    "load_image_folder",
    "lowrank64",
    "moons",
    "open_stream",
    "read_image",
    "read_manifest",
    "ring2d",
    "split_generator",
    "swiss_roll",
    "three_modes",
    "verify_shards",
    "write_shards",
]
