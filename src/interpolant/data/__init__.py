"""Data: analytic oracles, toy sets, digits and the user's own arrays and images."""

from .oracles import ORACLES, GaussianMixture, lowrank64, ring2d

__all__ = ["ORACLES", "GaussianMixture", "lowrank64", "ring2d"]
