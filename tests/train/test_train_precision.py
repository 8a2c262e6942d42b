"""Training precisions and gradient checkpointing through the trainer: fp16 with a loss scaler
(overflow skips the step, the scale is checkpointed and resume stays bitwise), fp8 through torchao
(emulated on the CPU), and checkpointed DiT training equal to plain training."""

import json

import pytest
import torch
from train_helpers import assert_same, make_config, make_data, make_model, make_objective, state_of

from interpolant import Model, paths
from interpolant.errors import UserError
from interpolant.losses import Objective
from interpolant.models import DiT
from interpolant.train import Trainer
from interpolant.train.precision import convert_to_fp8, grad_scaler, scaler_state


def _run(run_dir, objective=None, **changes):
    x, y = make_data()
    cfg = make_config(run_dir, **{"precision": "fp16", **changes})
    return Trainer(make_model(), objective or make_objective(), x, cfg, y).run()


def test_fp16_resume_is_bitwise_identical_and_saves_the_loss_scale(tmp_path):
    straight = _run(tmp_path / "a", steps=6, checkpoint_every=3)
    _run(tmp_path / "b", steps=3, checkpoint_every=3)
    resumed = _run(tmp_path / "b", steps=6, checkpoint_every=3, resume=True)
    assert_same(state_of(resumed), state_of(straight))
    newest = tmp_path / "b" / "checkpoints" / "step-00000006" / "state.json"
    saved = json.loads(newest.read_text())["grad_scaler"]
    assert saved["scale"] == resumed.scaler.get_scale() == straight.scaler.get_scale()
    assert set(saved) >= {"scale", "_growth_tracker", "growth_interval"}
    # The fp16 run trains (the loss moves) and is not the float32 run.
    fp32 = _run(tmp_path / "c", steps=6, checkpoint_every=3, precision="float32")
    assert any(
        not torch.equal(a, b) for a, b in zip(state_of(fp32).values(), state_of(straight).values())
    )


class OverflowOnce(Objective):
    """The ordinary objective, except that the first call's loss is scaled to overflow fp16."""

    calls = 0

    def loss(self, model, x0, generator=None, cond=None):
        OverflowOnce.calls += 1
        loss = super().loss(model, x0, generator=generator, cond=cond)
        return loss * 1e38 if OverflowOnce.calls == 1 else loss


def test_fp16_overflow_skips_the_step_and_halves_the_scale(tmp_path):
    OverflowOnce.calls = 0
    objective = OverflowOnce(paths.Linear(), target="velocity")
    x, y = make_data()
    cfg = make_config(tmp_path, precision="fp16", steps=1, batch_per_gpu=16, ema="none")
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, objective, x, cfg, y).run()
    after = trainer.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the step was skipped
    assert trainer.scaler.get_scale() == 2.0**15


def test_scaler_only_for_fp16():
    cpu = torch.device("cpu")
    assert grad_scaler("bf16", cpu) is None and scaler_state(None) == {}
    assert grad_scaler("fp16", cpu) is not None


def test_fp8_refused_without_float8_tensor_cores(tmp_path):
    x, y = make_data()
    with pytest.raises(UserError, match=r"compute capability >= 8\.9"):
        Trainer(make_model(), make_objective(), x, make_config(tmp_path, precision="fp8"), y)


def tiny_dit(**kwargs) -> DiT:
    return DiT(
        image_size=8, in_channels=1, patch_size=2, depth=2, hidden_size=32, num_heads=2, **kwargs
    )


def test_fp8_emulated_conversion_swaps_the_eligible_linears_and_stays_close():
    pytest.importorskip("torchao")  # the fp8 extra
    torch.manual_seed(0)
    net = tiny_dit()
    for p in net.parameters():  # zero-initialised layers get weights, so every matmul matters
        torch.nn.init.normal_(p, std=0.05)
    reference = DiT(**{k: v for k, v in net.model_config().items() if k != "name"})
    reference.load_state_dict(net.state_dict())
    swapped = convert_to_fp8(net, torch.device("cpu"), emulate=True)
    linears = [m for m in reference.modules() if isinstance(m, torch.nn.Linear)]
    eligible = [m for m in linears if m.in_features % 16 == 0 and m.out_features % 16 == 0]
    assert swapped == len(eligible) < len(linears)  # the 4-channel output layer stays
    assert net.state_dict().keys() == reference.state_dict().keys()  # checkpoints still load
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    out, ref = net(x, t), reference(x, t)
    # e4m3 keeps 3 mantissa bits: a relative error of a few per cent, not more.
    rel = (out - ref).norm() / ref.norm()
    assert 1e-4 < rel < 0.1


def _dit_run(run_dir, **changes):
    torch.manual_seed(0)
    model = Model(tiny_dit(), paths.Linear(), predicts="velocity")
    data = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    cfg = make_config(run_dir, steps=3, batch_size=8, ema="none", **changes)
    return Trainer(model, Objective(paths.Linear(), target="velocity"), data, cfg).run()


def test_gradient_checkpointing_trains_the_same_weights(tmp_path):
    plain = _dit_run(tmp_path / "plain")
    ckpt = _dit_run(tmp_path / "ckpt", gradient_checkpointing=True)
    assert ckpt.module.net.gradient_checkpointing and not plain.module.net.gradient_checkpointing
    for (name, a), b in zip(plain.module.state_dict().items(), ckpt.module.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_checkpointing_refused_for_a_network_without_blocks(tmp_path):
    x, y = make_data()
    cfg = make_config(tmp_path, gradient_checkpointing=True)
    with pytest.raises(UserError, match="no checkpointable blocks"):
        Trainer(make_model(), make_objective(), x, cfg, y)
