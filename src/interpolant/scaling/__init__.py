"""Inference-time scaling: verifiers, noise and path search, FK steering, RBF, budgets."""

# Each block below adds its own names (`__all__ += [...]`).
__all__: list[str] = []

# --- verifiers, exact tilted targets, search, FK steering (rewards.py, targets.py, search.py,
# fk.py; seed papers 16 and 28) ---
from .base import BudgetError, Ledger, Reward, check_rewards
from .fk import (
    ANCESTRAL,
    FKResult,
    FKSteering,
    Particles,
    effective_sample_size,
    fk_steer,
    resample_indices,
)
from .rewards import (
    ClassifierReward,
    ComponentReward,
    LinearReward,
    QuadraticReward,
    load_reward,
    reward_from_spec,
    reward_on_x0,
)
from .search import (
    SEARCH_SAMPLER,
    SearchResult,
    best_of_n,
    random_search,
    search,
    search_over_paths,
    zero_order_search,
)
from .targets import (
    TiltedTarget,
    best_of_n_expected_reward,
    expected_max_standard_normal,
    expected_reward,
    tilt,
)

__all__ += [
    "ANCESTRAL",
    "SEARCH_SAMPLER",
    "BudgetError",
    "ClassifierReward",
    "ComponentReward",
    "FKResult",
    "FKSteering",
    "Ledger",
    "LinearReward",
    "Particles",
    "QuadraticReward",
    "Reward",
    "SearchResult",
    "TiltedTarget",
    "best_of_n",
    "best_of_n_expected_reward",
    "check_rewards",
    "effective_sample_size",
    "expected_max_standard_normal",
    "expected_reward",
    "fk_steer",
    "load_reward",
    "random_search",
    "resample_indices",
    "reward_from_spec",
    "reward_on_x0",
    "search",
    "search_over_paths",
    "tilt",
    "zero_order_search",
]
# --- end of the verifiers / search / FK block ---

# --- AutoDiffusion: time-step and block-skipping search (autodiffusion.py; seed paper 4) ---
from .autodiffusion import (  # noqa: E402  (one block per helper, see the top)
    AUTODIFFUSION_SAMPLER,
    AutoDiffusionResult,
    EvolutionConfig,
    SkipPlan,
    SkipSearch,
    autodiffusion_search,
    distribution_distance,
    grid_fitness,
    search_skips,
    search_timesteps,
    skipping,
    with_skip_plan,
)

__all__ += [
    "AUTODIFFUSION_SAMPLER",
    "AutoDiffusionResult",
    "EvolutionConfig",
    "SkipPlan",
    "SkipSearch",
    "autodiffusion_search",
    "distribution_distance",
    "grid_fitness",
    "search_skips",
    "search_timesteps",
    "skipping",
    "with_skip_plan",
]
# --- end of the AutoDiffusion block ---

# --- stochastic generation, particle sampling, rollover budget forcing (rbf.py; seed paper 18) ---
from .rbf import (  # noqa: E402  (one block per helper, see the top)
    G_FAMILIES,
    RBF_SAMPLER,
    ParticleResult,
    diffusion_coefficient,
    particle_sample,
    rbf_sample,
)

__all__ += [
    "G_FAMILIES",
    "RBF_SAMPLER",
    "ParticleResult",
    "diffusion_coefficient",
    "particle_sample",
    "rbf_sample",
]
# --- end of the RBF block ---
