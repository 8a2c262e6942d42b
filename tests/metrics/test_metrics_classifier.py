"""The shipped digits classifier: its accuracy on held-out digits, its Frechet distances, its
class probabilities (differentiable for guidance), and the training script's determinism."""

import json

import pytest
import torch

from interpolant.data import load_digits
from interpolant.metrics import (
    class_confidence,
    class_log_probs,
    classifier_accuracy,
    digits_features,
    frechet_distance,
    load_digits_classifier,
)
from interpolant.metrics.classifier import INFO_FILE, WEIGHTS_FILE, train_digits_classifier

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return load_digits("train"), load_digits("test")


def test_shipped_weights_are_small_and_documented():
    assert WEIGHTS_FILE.is_file() and WEIGHTS_FILE.stat().st_size < 1_000_000
    info = json.loads(INFO_FILE.read_text())
    assert info["n_test"] == 297 and info["settings"]["seed"] == 0
    assert info["data"]["split_seed"] == 0


def test_shipped_classifier_accuracy_on_held_out_digits(digits):
    _, test = digits
    acc = classifier_accuracy(test.x, test.labels)
    assert acc >= 0.95
    recorded = json.loads(INFO_FILE.read_text())["test_accuracy"]
    assert abs(acc - recorded) <= 1 / 297  # at most one prediction flips across CPUs
    assert classifier_accuracy(test.x.reshape(-1, 64), test.labels) == acc  # (N, 64) input too


def test_frechet_distance_in_classifier_features(digits):
    train, test = digits
    assert frechet_distance(test.x, test.x) == pytest.approx(0.0, abs=1e-6)
    held_out = frechet_distance(train.x, test.x)
    noise = torch.rand(test.x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    to_noise = frechet_distance(test.x, noise)
    low, high = train.x[train.labels < 5], test.x[test.labels >= 5]
    across_classes = frechet_distance(low, high)
    same_classes = frechet_distance(low, test.x[test.labels < 5])
    assert held_out < 0.1 * to_noise
    assert held_out < 0.1 * across_classes
    assert same_classes < 0.2 * across_classes
    assert digits_features(test.x).shape == (297, 64)


def test_class_confidence_and_gradients(digits):
    _, test = digits
    conf = class_confidence(test.x, test.labels)
    assert conf.shape == (297,) and float(conf.mean()) > 0.9
    top = class_confidence(test.x)
    assert (top >= conf - 1e-12).all()
    logp = class_log_probs(test.x[:5])
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(5, dtype=torch.float64))
    x = test.x[:4].clone().requires_grad_(True)
    class_log_probs(x).gather(1, test.labels[:4, None]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # usable for classifier guidance
    with pytest.raises(ValueError, match="labels must have 297"):
        class_confidence(test.x, test.labels[:3])
    with pytest.raises(ValueError, match="8x8 digits"):
        class_log_probs(torch.zeros(2, 3, 8, 8))


def test_training_is_deterministic():
    a, report = train_digits_classifier({"epochs": 1}, verbose=False)
    b, _ = train_digits_classifier({"epochs": 1}, verbose=False)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert report["settings"]["epochs"] == 1 and 0 <= report["test_accuracy"] <= 1
    # The shipped network differs from a one-epoch one (the file holds the full training run).
    shipped = load_digits_classifier()
    assert not torch.equal(shipped.head.weight, a.head.weight)
