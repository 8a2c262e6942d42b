"""Inference-time scaling from a run folder: ``interpolant sample RUN --search ... --reward ...``
and ``--steer fk --particles K``. The methods themselves live in :mod:`interpolant.scaling`;
this module loads the run, builds the reward and records what was spent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..solvers import as_sampler
from .runs import LoadedRun, Samples, _classes_of, load_run

#: Steering methods of ``--steer``.
STEER_METHODS = ("fk", "rbf")


def scaled_sample(
    run: str | Path | LoadedRun,
    *,
    reward: str,
    search: str | None = None,
    steer: str | None = None,
    particles: int = 4,
    budget: int | None = None,
    n: int = 16,
    seed: int = 0,
    solver: str | None = None,
    nfe: int | None = None,
    grid: str | None = None,
    class_label: int | None = None,
    device: str = "auto",
    **options: Any,
) -> Samples:
    """``n`` samples of a run chosen by a search method (``search="random:8"``, ``"best_of_n:8"``,
    ``"zero_order:4"``, ``"paths:4"``), steered with FK (``steer="fk"``, ``particles`` K) or
    with rollover budget forcing (``steer="rbf"``, ``budget`` required, ``nfe`` its steps)
    toward a reward spec (``"classifier:3"``, ``"linear:1,0"``, ``"module:function"``; see
    :func:`interpolant.scaling.reward_from_spec`).

    ``solver``/``nfe``/``grid`` default to the run's sample section and, with ``seed``, make the
    method's sampler spec (FK needs a stochastic solver: its default is ancestral DDIM, RBF's
    the SDE of its paper). ``budget`` caps the model evaluations per final sample; ``options``
    go to the method (``temperature``, ``potential``, ``neighbors``, ...). The result's
    ``meta["scaling"]`` records the rewards and the evaluations spent.
    """
    from ..scaling import (
        ANCESTRAL,
        RBF_SAMPLER,
        SEARCH_SAMPLER,
        FKSteering,
        fk_steer,
        rbf_sample,
        reward_from_spec,
    )
    from ..scaling import search as run_search

    if (search is None) == (steer is None):
        raise UserError("give exactly one of --search METHOD[:N] or --steer fk")
    if steer is not None and steer not in STEER_METHODS:
        raise UserError(f"unknown --steer {steer!r}; choose one of {STEER_METHODS}")
    if particles < 1:
        raise UserError(f"--particles must be >= 1, got {particles}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run, device=device)
    if loaded.data_info is None:
        raise UserError(f"{loaded.checkpoint} does not record the data's shape")
    shape = tuple(loaded.data_info.shape)
    settings = loaded.config.sample
    fn = reward_from_spec(reward)
    cond: dict[str, Any] | None = None
    if _classes_of(loaded.config.train):
        label = settings.class_label if class_label is None else class_label
        labels = torch.full((n,), 0 if label is None else int(label), dtype=torch.long)
        cond = {loaded.config.train.cond_key: labels.to(next(loaded.model.parameters()).device)}
    if not isinstance(grid or settings.grid, str):
        raise UserError("search and steering take a named grid (uniform, karras, ...), not times")
    steps = nfe or settings.nfe
    result: Any
    if search is not None:
        spec = as_sampler(
            SEARCH_SAMPLER,
            solver=solver or settings.solver,
            nfe=steps,
            grid=grid or settings.grid,
            seed=seed,
        )
        result = run_search(
            loaded.model, search, fn, budget, spec, n=n, shape=shape, cond=cond, **options
        )
        method = search
    elif steer == "rbf":
        if budget is None:
            raise UserError("--steer rbf needs --budget NFE (model evaluations per sample)")
        if solver is not None:
            raise UserError("--steer rbf uses its own SDE sampler; drop --solver")
        spec = as_sampler(RBF_SAMPLER, steps=max(2, steps), seed=seed)
        result = rbf_sample(loaded.model, fn, budget, shape, spec, n=n, cond=cond, **options)
        method = f"rbf (budget {budget})"
    else:
        # FK's own default solver is ancestral DDIM (the run's may be an ODE).
        shortcuts: dict[str, Any] = {"nfe": steps, "grid": grid or settings.grid, "seed": seed}
        if solver is not None:
            shortcuts["solver"] = solver
        choose = options.pop("choose", "sample")
        result = fk_steer(
            loaded.model,
            FKSteering(fn, particles, **options),
            as_sampler(ANCESTRAL, **shortcuts),
            n=n,
            shape=shape,
            choose=choose,
            cond=cond,
            budget=budget,
        )
        method = f"fk (K={particles})"
    ledger = result.ledger
    meta = {
        "run_dir": str(loaded.run_dir),
        "checkpoint": str(loaded.checkpoint),
        "ema": loaded.ema,
        "data": loaded.data_info.to_dict(),
        "data_config": loaded.config.data.__dict__,
        "sample": {**settings.__dict__, "n": n, "seed": seed},
        "scaling": {
            "method": method,
            "reward": reward,
            "mean_reward": float(result.rewards.mean()),
            "rewards": result.rewards.tolist(),
            "model_evals": ledger.model_evals,
            "model_evals_per_sample": ledger.model_evals / n,
            "reward_evals": ledger.reward_evals,
            "budget_per_sample": budget,
        },
    }
    labels_out = None if cond is None else next(iter(cond.values())).cpu()
    return Samples(result.x.detach().cpu().float(), labels_out, meta)
