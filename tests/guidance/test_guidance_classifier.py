"""Classifier guidance: with the exact noise-aware classifier at w = 1 it is the exact
conditional model (Bayes' rule), on every path and solver; errors; the training recipe."""

from __future__ import annotations

import pytest
import torch

from interpolant import paths, sample
from interpolant.guidance import (
    ClassifierGuidance,
    NoiseAwareClassifier,
    train_noise_aware_classifier,
)
from interpolant.randomness import Streams
from interpolant.solvers import FunctionHook

PATHS = {"vp": paths.VP, "edm": paths.EDM, "linear": paths.Linear}


@pytest.mark.parametrize("path_name", sorted(PATHS))
@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "heun"])
def test_exact_classifier_at_w1_is_the_exact_conditional(mixture, noise, labels, path_name, solver):
    path = PATHS[path_name]()
    model = mixture.model(path)
    kw = {"solver": solver, "nfe": 10, "t_max": 0.999, "solver_dtype": "float64"}
    exact = sample(model, noise, cond={"class_labels": labels}, **kw)
    hook = ClassifierGuidance(mixture.classifier(path), 1.0, mixture.n_classes, labels=labels)
    guided = sample(model, noise, hooks=[hook], **kw)
    torch.testing.assert_close(guided.x, exact.x, rtol=0, atol=1e-10)
    # A classifier call is not a model evaluation: the NFE is unguided sampling's, and the hook's
    # per-run state counts the classifier calls (one per model evaluation, all inside (0, 1]).
    assert guided.nfe == exact.nfe
    assert guided.state(hook).classifier_calls == exact.nfe


def test_stochastic_solver_and_labels_from_cond(mixture, noise, labels):
    path = paths.VP()
    model = mixture.model(path)
    kw = {"solver": "sde_euler", "nfe": 12, "seed": 5}
    exact = sample(model, noise, cond={"class_labels": labels}, **kw)
    hook = ClassifierGuidance(mixture.classifier(path), 1.0, mixture.n_classes)
    # The unconditional model reads no labels; the hook reads them from cond.
    uncond = type(model)(lambda x, t, class_labels=None: model.net(x, t), path, "x0")
    guided = sample(uncond, noise, cond={"class_labels": labels}, hooks=[hook], **kw)
    torch.testing.assert_close(guided.x, exact.x, rtol=0, atol=1e-10)


def test_scale_multiplies_the_score_term(mixture, noise, labels):
    path, t, x = paths.EDM(), 0.3, noise * 3.0
    model = mixture.model(path)
    scores = {}
    for w in (0.0, 1.0, 2.5):
        seen: list[torch.Tensor] = []
        hook = ClassifierGuidance(mixture.classifier(path), w, 2, labels=labels)
        record = FunctionHook(on_prediction=lambda p, n, r, seen=seen: seen.append(p.score) or p)
        sample(model, x, grid=[t, 0.0], scale_noise=False, hooks=[hook, record])
        scores[w] = seen[0]
    grad = scores[1.0] - scores[0.0]
    torch.testing.assert_close(scores[2.5], scores[0.0] + 2.5 * grad, rtol=0, atol=1e-10)
    # The term is grad log P(c | x_t) of the exact posterior.
    xr = x.clone().requires_grad_(True)
    logp = mixture.class_log_posterior(xr, t, path).gather(1, labels[:, None]).sum()
    torch.testing.assert_close(grad, torch.autograd.grad(logp, xr)[0], rtol=0, atol=1e-10)


def test_batch_invariance(mixture, noise, labels):
    path = paths.VP()
    hook = ClassifierGuidance(mixture.classifier(path), 3.0, 2, interval=(0.05, 1.0))
    kw = {"solver": "dpmpp_2m", "nfe": 8, "hooks": [hook]}
    model = mixture.model(path)
    full = sample(model, noise, cond={"class_labels": labels}, **kw).x
    part = sample(model, noise[3:], cond={"class_labels": labels[3:]}, **kw).x
    torch.testing.assert_close(part, full[3:], rtol=0, atol=1e-12)


def test_errors(mixture, noise, labels):
    path = paths.VP()
    model = mixture.model(path)
    wrong = ClassifierGuidance(mixture.classifier(path), 1.0, 3, labels=labels)
    with pytest.raises(ValueError, match="n_classes=3"):
        sample(model, noise, nfe=3, hooks=[wrong])
    no_labels = ClassifierGuidance(mixture.classifier(path), 1.0, 2)
    with pytest.raises(ValueError, match="target classes"):
        sample(model, noise, nfe=3, hooks=[no_labels])
    pfgm = paths.PFGM(D=16)
    hook = ClassifierGuidance(mixture.classifier(pfgm), 1.0, 2, labels=labels)
    with pytest.raises(ValueError, match="Student-t"):
        sample(mixture.model(pfgm), noise, nfe=3, hooks=[hook])
    with pytest.raises(ValueError, match="n_classes"):
        ClassifierGuidance(mixture.classifier(path), 1.0, 1)


def test_trained_noise_aware_classifier_knows_the_class_only_at_low_noise(mixture, tmp_path):
    torch.manual_seed(0)
    path = paths.VP()
    x, y = mixture.sample(4000, torch.Generator().manual_seed(0))
    clf = train_noise_aware_classifier(
        x.float(), y, path, steps=300, batch_size=256, width=64, run_dir=str(tmp_path), seed=0
    )
    assert isinstance(clf, NoiseAwareClassifier)
    xt, yt = mixture.sample(2000, torch.Generator().manual_seed(1))
    streams = Streams(0, 2000, stream="classifier-test")
    with torch.no_grad():
        acc = {}
        for t in (0.05, 0.99):
            eps = streams.normal((2,), dtype=torch.float64)
            x_t = path.sample_xt(xt, torch.full((2000,), t, dtype=torch.float64), eps).float()
            logits = clf(x_t, torch.full((2000,), t))
            acc[t] = float((logits.argmax(1) == yt).float().mean())
            # The Bayes accuracy with the exact posterior bounds what any classifier can do.
            bayes = mixture.class_log_posterior(x_t.double(), t, path).argmax(1)
            acc[f"bayes{t}"] = float((bayes == yt).float().mean())
    assert acc[0.05] > acc["bayes0.05"] - 0.03
    assert abs(acc[0.99] - 0.5) < 0.06
