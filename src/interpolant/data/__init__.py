"""Data: analytic oracles, toy sets, digits and the user's own arrays and images."""

from .base import DataInfo, LoadedData, holdout_indices
from .digits import DIGITS_N_TEST, load_digits
from .files import load_array, load_csv, load_files, load_image_folder, read_image
from .oracles import ORACLES, GaussianMixture, as_gaussian, fit_gaussian, lowrank64, ring2d
from .registry import DATASETS, DatasetSpec, load_dataset, split_generator
from .stats import Normalizer, channel_stats, estimate_sigma_data
from .toy import TOY_SETS, checkerboard, circles, eight_gaussians, moons, swiss_roll

__all__ = [
    "DATASETS",
    "DIGITS_N_TEST",
    "ORACLES",
    "TOY_SETS",
    "DataInfo",
    "DatasetSpec",
    "GaussianMixture",
    "LoadedData",
    "Normalizer",
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
    "read_image",
    "ring2d",
    "split_generator",
    "swiss_roll",
]
