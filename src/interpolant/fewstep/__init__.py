"""Few-step and one-step generation: teacher pairs, couplings, reflow, SlimFlow, consistency
models, MeanFlow, shortcut models and MMD fine-tuning.

Every method is an objective of the stock :class:`~interpolant.train.Trainer` (its
``loss(model, rows, generator, cond)``), so DDP/FSDP, EMA and resume work unchanged. Methods that
train on teacher pairs take rows ``Pairs.rows()`` (x0 and eps stacked); the others take data.
"""

from .couplings import BETA_SCHEDULES, PAIR_COUPLINGS, BetaSchedule, PairCoupling
from .distances import DISTANCES, get_distance, l2, pseudo_huber
from .pairs import Pairs, load_pairs, make_pairs, pair_rows, split_rows
from .reflow import FlowGuidedDistillation, Reflow
from .straightness import RecordVelocity, straightness
from .teacher import AnalyticFlow, analytic_teacher, teacher_hash

__all__ = [
    "BETA_SCHEDULES",
    "DISTANCES",
    "PAIR_COUPLINGS",
    "AnalyticFlow",
    "BetaSchedule",
    "FlowGuidedDistillation",
    "PairCoupling",
    "Pairs",
    "RecordVelocity",
    "Reflow",
    "analytic_teacher",
    "get_distance",
    "l2",
    "load_pairs",
    "make_pairs",
    "pair_rows",
    "pseudo_huber",
    "split_rows",
    "straightness",
    "teacher_hash",
]
