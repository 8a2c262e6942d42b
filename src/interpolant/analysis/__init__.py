"""Analysis tools for the theory of diffusion models, each checked against exact answers.

* ``derivatives``: Jacobians, exact and Hutchinson divergences, a conservativity check
  (``torch.func``: vmap over JVPs, no Python loops over dimensions);
* ``potential``: conservative scores ``-grad E`` and a smooth scalar energy network;
* ``fokker_planck``: Fokker-Planck residuals (log-density and score forms) and the
  ``fokker-planck`` loss term (seed paper 5); ``wasserstein``: W2 on a grid (exact LP) and sliced;
* ``intrinsic_dim``: normal-bundle and Jacobian-flow estimators (seed paper 10);
* ``hallucination``: the trajectory-variance score, the filter and recursive training with and
  without it (seed paper 11);
* ``molrg``: mixtures of low-rank Gaussians, the subspace denoiser, PCA / K-subspaces and the
  Jacobian rank of a denoiser (seed paper 25).
"""

from .derivatives import (
    EXACT_MAX_DIM,
    asymmetry,
    divergence,
    hutchinson_divergence,
    jacobian,
)
from .fokker_planck import (
    FokkerPlanck,
    fp_residual,
    log_density_residual,
    score_residual,
    sde_coefficients,
)
from .hallucination import (
    Generation,
    TrajectoryRecorder,
    auroc,
    hallucination_score,
    keep_lowest,
    recursive_training,
    threshold_at_retention,
)
from .intrinsic_dim import DimensionEstimate, jacobian_flow_dim, normal_bundle_dim
from .molrg import (
    MoLRG,
    SubspaceDenoiser,
    generalization_score,
    jacobian_rank,
    k_subspaces,
    pca_subspace,
    subspace_distance,
    train_subspace_denoiser,
)
from .potential import ConservativeScore, PotentialNet, check_twice_differentiable
from .wasserstein import w2_grid, w2_samples, w2_sliced

__all__ = [
    "EXACT_MAX_DIM",
    "ConservativeScore",
    "DimensionEstimate",
    "FokkerPlanck",
    "Generation",
    "MoLRG",
    "PotentialNet",
    "SubspaceDenoiser",
    "TrajectoryRecorder",
    "asymmetry",
    "auroc",
    "check_twice_differentiable",
    "divergence",
    "fp_residual",
    "generalization_score",
    "hallucination_score",
    "hutchinson_divergence",
    "jacobian",
    "jacobian_flow_dim",
    "jacobian_rank",
    "k_subspaces",
    "keep_lowest",
    "log_density_residual",
    "normal_bundle_dim",
    "pca_subspace",
    "recursive_training",
    "score_residual",
    "sde_coefficients",
    "subspace_distance",
    "threshold_at_retention",
    "train_subspace_denoiser",
    "w2_grid",
    "w2_samples",
    "w2_sliced",
]
