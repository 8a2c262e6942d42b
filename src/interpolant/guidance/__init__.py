"""Guidance as hooks of ``interpolant.sample``: classifier-free guidance and autoguidance,
classifier guidance, reconstruction guidance (DPS), TSDiff self-guidance, and
reward-conditioned generation. Every hook works through :class:`interpolant.Prediction`, so it
runs with every solver, every Gaussian path and every prediction kind, and every extra model
evaluation it makes counts in the run's NFE::

    from interpolant import guidance, sample
    result = sample(model, noise, nfe=20, cond={"class_labels": y},
                    hooks=[guidance.CFG(3.0, interval=(0.2, 0.8))])
    hooks = guidance.from_spec("cfg:3.0@0.2-0.8", model)
"""

from .base import SCHEDULES, GuidanceScale, add_to_score, check_score_path
from .cfg import APG, CFG, AutoGuidance, CFGRescale, CFGZeroStar, ReferenceGuidance
from .classifier import (
    ClassifierCalls,
    ClassifierGuidance,
    ClassifierObjective,
    NoiseAwareClassifier,
    train_noise_aware_classifier,
)
from .energy import (
    EnergyGuidance,
    ObservationGuidance,
    ReconstructionGuidance,
    pinball,
    quantile_levels,
)
from .exact import LabelledMixture, two_class_mixture
from .reward import RewardMLP, train_reward_model
from .spec import GuidanceSpec, from_spec, needs_null_label, parse_spec

__all__ = [
    "APG",
    "CFG",
    "SCHEDULES",
    "AutoGuidance",
    "CFGRescale",
    "CFGZeroStar",
    "ClassifierCalls",
    "ClassifierGuidance",
    "ClassifierObjective",
    "EnergyGuidance",
    "GuidanceScale",
    "GuidanceSpec",
    "LabelledMixture",
    "NoiseAwareClassifier",
    "ObservationGuidance",
    "ReconstructionGuidance",
    "ReferenceGuidance",
    "RewardMLP",
    "add_to_score",
    "check_score_path",
    "from_spec",
    "needs_null_label",
    "parse_spec",
    "pinball",
    "quantile_levels",
    "train_noise_aware_classifier",
    "train_reward_model",
    "two_class_mixture",
]
