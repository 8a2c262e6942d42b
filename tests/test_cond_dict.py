"""Per-sample conditioning of any structure through the trainer: rows, checks, checkpoints, DDP."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from interpolant.errors import UserError
from interpolant.train import Trainer
from interpolant.train.checkpoint import CheckpointError
from interpolant.train.conditioning import as_cond, check_cond_resume, describe_cond

torch.set_num_threads(1)
N = 24


class RecordingObjective:
    """Records the cond each loss call sees next to the rows' x0 (x0[:, 0] is the row index)."""

    def __init__(self):
        self.calls = []

    def loss(self, model, x0, generator=None, cond=None):
        self.calls.append((x0.detach().clone(), {k: v.clone() for k, v in (cond or {}).items()}))
        return model(x0).square().mean()


def _config(run_dir, **changes):
    base = dict(
        run_dir=str(run_dir), device="cpu", steps=3, batch_size=8, lr=1e-2, ema="none",
        log_every=1, checkpoint_every=2, progress=False,
    )  # fmt: skip
    base.update(changes)
    return base


def _data():
    x = torch.arange(N, dtype=torch.float32)[:, None].repeat(1, 2)
    cond = {
        "scale": 10.0 * torch.arange(N, dtype=torch.float64),
        "pair": torch.stack([torch.arange(N), -torch.arange(N)], dim=1),
        "image": torch.arange(N, dtype=torch.float32)[:, None, None, None].expand(N, 1, 2, 2),
    }
    return x, cond


def test_each_row_gets_its_own_conditioning_of_any_structure(tmp_path):
    x, cond = _data()
    objective = RecordingObjective()
    Trainer(nn.Linear(2, 2), objective, x, _config(tmp_path), cond=cond).run()
    assert len(objective.calls) == 3
    for x0, seen in objective.calls:
        rows = x0[:, 0].long()
        assert sorted(seen) == ["image", "pair", "scale"]
        torch.testing.assert_close(seen["scale"], cond["scale"][rows], rtol=0, atol=0)
        torch.testing.assert_close(seen["pair"], cond["pair"][rows], rtol=0, atol=0)
        assert seen["image"].shape == (8, 1, 2, 2)
        torch.testing.assert_close(seen["image"][:, 0, 0, 0], x0[:, 0], rtol=0, atol=0)


def test_labels_keep_working_next_to_cond(tmp_path):
    x, cond = _data()
    labels = torch.arange(N) % 3
    objective = RecordingObjective()
    Trainer(nn.Linear(2, 2), objective, x, _config(tmp_path, steps=1), labels, cond=cond).run()
    x0, seen = objective.calls[0]
    torch.testing.assert_close(seen["class_labels"], labels[x0[:, 0].long()])
    with pytest.raises(UserError, match="labels and cond\\['class_labels'\\] both given"):
        as_cond(labels, {"class_labels": labels}, "class_labels", N)


def test_missing_modality_is_refused_with_row_and_key(tmp_path):
    x, cond = _data()
    cond["image"] = cond["image"].clone()
    cond["image"][13, 0, 1, 0] = float("nan")
    with pytest.raises(UserError, match=r"cond\['image'\] is missing in row 13"):
        Trainer(nn.Linear(2, 2), RecordingObjective(), x, _config(tmp_path), cond=cond)
    x, cond = _data()
    mask = torch.ones(N, dtype=torch.bool)
    mask[[5, 7]] = False
    with pytest.raises(UserError, match=r"cond\['pair'\] is missing in row 5 .*2 rows in all"):
        Trainer(
            nn.Linear(2, 2), RecordingObjective(), x, _config(tmp_path), cond=cond,
            cond_masks={"pair": mask},
        )  # fmt: skip
    with pytest.raises(UserError, match=r"one row per training example \(24\)"):
        as_cond(None, {"short": torch.zeros(N - 1)}, "class_labels", N)
    with pytest.raises(UserError, match="must be a tensor"):
        as_cond(None, {"list": [1, 2]}, "class_labels", N)  # type: ignore[dict-item]


def test_resume_with_other_conditioning_is_refused(tmp_path):
    x, cond = _data()
    Trainer(nn.Linear(2, 2), RecordingObjective(), x, _config(tmp_path, steps=2), cond=cond).run()
    # The same cond resumes.
    same = Trainer(nn.Linear(2, 2), RecordingObjective(), x, _config(tmp_path, steps=3), cond=cond)
    assert same.run().step == 3
    changed = dict(cond, scale=cond["scale"].flip(0))
    other = Trainer(
        nn.Linear(2, 2), RecordingObjective(), x, _config(tmp_path, steps=5), cond=changed
    )
    with pytest.raises(CheckpointError, match=r"cond\['scale'\]\.fingerprint"):
        other.run()
    fewer = {k: v for k, v in cond.items() if k != "pair"}
    other = Trainer(
        nn.Linear(2, 2), RecordingObjective(), x, _config(tmp_path, steps=5), cond=fewer
    )
    with pytest.raises(CheckpointError, match="cond keys"):
        other.run()


def test_description_and_old_checkpoints():
    _, cond = _data()
    desc = describe_cond(cond)
    assert desc is not None and desc["image"]["shape"] == [1, 2, 2]
    assert desc["pair"]["dtype"] == "int64"
    check_cond_resume("f", {"shape": [2]}, desc)  # written before cond was recorded: accepted
    check_cond_resume("f", {"cond": desc}, describe_cond(dict(cond)))
    with pytest.raises(CheckpointError):
        check_cond_resume("f", {"cond": desc}, None)


DDP_SCRIPT = """
import sys, torch
from interpolant.multitask import AggregatedProcess, MTDiffusionObjective, joint_mlp
from interpolant.train import Trainer
torch.manual_seed(0)
x = torch.randn(32, 1, 2, 2)
cond = {"class_labels": torch.arange(32) % 3}
torch.manual_seed(1)
model = joint_mlp((1, 2, 2), 3, width=16, depth=1)
cfg = dict(run_dir=sys.argv[1], device="cpu", steps=3, batch_size=16, batch_per_gpu=4,
           noise_block=4, lr=1e-2, ema="none", checkpoint_every=3, progress=False)
Trainer(model, MTDiffusionObjective(AggregatedProcess(steps=20)), x, cfg, cond=cond).run().close()
"""


@pytest.mark.distributed
def test_dict_conditioning_through_ddp_equals_one_process(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for name, extra in (("dist", cmd), ("single", [sys.executable])):
        proc = subprocess.run(
            [*extra, str(script), str(tmp_path / name)],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    paths = [Path(tmp_path / n / "checkpoints" / "step-00000003") for n in ("dist", "single")]
    dist, single = (load_file(str(p / "model.safetensors")) for p in paths)
    assert "encoders.class_labels.weight" in dist
    for key in single:
        torch.testing.assert_close(dist[key], single[key], rtol=0, atol=1e-6, msg=key)
