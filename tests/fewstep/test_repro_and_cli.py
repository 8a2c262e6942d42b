"""The reproductions' claim rules, their quick runs (slow), and ``interpolant distill``."""

from __future__ import annotations

import pytest
import torch

from interpolant.cli.distill import distill
from interpolant.errors import UserError
from interpolant.repro import seed09_mmd_finetune as seed09
from interpolant.repro import seed15_slimflow as seed15


def test_seed15_rule():
    sw = {
        "small 1-RF": 0.6,
        "reflow": 0.05,
        "annealed reflow": 0.04,
        "naive distill": 0.05,
        "flow-guided": 0.045,
    }
    straight = {"teacher": 0.6, "annealed reflow": 0.01}
    assert seed15.claim_rule(sw, straight)
    assert not seed15.claim_rule({**sw, "annealed reflow": 0.06}, straight)
    assert not seed15.claim_rule({**sw, "flow-guided": 0.05}, straight)
    assert not seed15.claim_rule(sw, {**straight, "annealed reflow": 0.7})


def test_seed09_rule_and_pca_features():
    assert seed09.claim_rule({2: 10.0, 4: 8.0}, {2: 7.0, 4: 5.6})
    assert not seed09.claim_rule({2: 10.0, 4: 8.0}, {2: 7.0, 4: 5.7})
    x = torch.randn(200, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    psi = seed09.pca_features(x, 64)
    z = psi(x)  # a rotation of the centred data: distances are kept
    assert torch.allclose(torch.cdist(z, z), torch.cdist(x, x), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("module", [seed15, seed09])
def test_quick_runs(module):
    result = module.REPRO(quick=True)
    assert result.quick and all(v == v for v in result.numbers.values())  # no NaN


def test_distill_cli_writes_a_run_that_samples_in_k_steps(tmp_path):
    from interpolant.api import runs

    teacher_dir = tmp_path / "teacher"
    runs.train(
        "toy2d-flow",
        overrides=[
            f"train.run_dir={teacher_dir}",
            "train.steps=30",
            "train.progress=false",
            "train.sample_every=null",
            "data.n=500",
            "train.checkpoint_every=30",
        ],
        plots=False,
    )
    new = distill(teacher_dir, "reflow", 1, pairs=256, pair_nfe=8, train_steps=20, width=16)
    assert (new / "pairs" / "pairs.json").is_file()
    out = runs.sample(new, n=64)
    assert out.x.shape == (64, 2) and torch.isfinite(out.x).all()
    loaded = runs.load_run(new)
    assert loaded.config.sample.solver == "euler" and loaded.config.sample.nfe == 1
    assert loaded.config.train.model["width"] == 16
    with pytest.raises(UserError, match="power of two"):
        distill(teacher_dir, "shortcut", 3)
    with pytest.raises(UserError, match="8x8 digits"):
        distill(teacher_dir, "mmd", 2, train_steps=2)
    with pytest.raises(UserError, match="no run folder"):
        distill(tmp_path / "missing", "reflow", 1)
