"""``from_spec``: the command-line strings become the right hooks with the right weights."""

from __future__ import annotations

import pytest
import torch

from interpolant import paths, sample
from interpolant.guidance import CFG, AutoGuidance, ClassifierGuidance, from_spec, parse_spec


def test_parse_spec_fields():
    assert parse_spec("cfg:3.0") == [
        {"name": "cfg", "scale": 3.0, "schedule": "constant", "interval": (0.0, 1.0)}
    ]
    (p,) = parse_spec("cfg:3.0@0.2-0.8")
    assert p["interval"] == (0.2, 0.8)
    (p,) = parse_spec("CFG:4:cosine@1e-3-0.5")
    assert (p["scale"], p["schedule"], p["interval"]) == (4.0, "cosine", (1e-3, 0.5))
    assert [q["name"] for q in parse_spec("cfg:2, autoguidance:1.5")] == ["cfg", "autoguidance"]
    # Defaults from the command line's --guidance-interval / --guidance-schedule.
    (p,) = parse_spec("cfg:2", schedule="linear", interval=(0.1, 0.7))
    assert (p["schedule"], p["interval"]) == ("linear", (0.1, 0.7))
    (p,) = parse_spec("cfg:2@0.3-0.4", interval=(0.1, 0.7))
    assert p["interval"] == (0.3, 0.4)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("cfg", "expected NAME:SCALE"),
        ("foo:2", "unknown guidance"),
        ("cfg:2:square", "schedule"),
        ("cfg:2@0.9-0.1", "interval"),
        ("", "non-empty"),
    ],
)
def test_bad_specs(bad, match, mixture):
    with pytest.raises(ValueError, match=match):
        from_spec(bad, mixture.model(paths.VP()))


def test_from_spec_builds_equivalent_hooks(mixture, noise, labels):
    model = mixture.model(paths.VP())
    (hook,) = from_spec("cfg:3.0@0.2-0.8", model)
    assert isinstance(hook, CFG)
    assert [hook.weight(t) for t in (0.1, 0.5, 0.9)] == [1.0, 3.0, 1.0]
    kw = {"solver": "euler", "nfe": 6, "cond": {"class_labels": labels}}
    a = sample(model, noise, hooks=[hook], **kw)
    b = sample(model, noise, hooks=[CFG(3.0, interval=(0.2, 0.8))], **kw)
    assert torch.equal(a, b)
    (auto,) = from_spec("autoguidance:2", model, reference=mixture.model(paths.VP()))
    assert isinstance(auto, AutoGuidance)
    (clf,) = from_spec(
        "classifier:1.5:linear", model, classifier=mixture.classifier(paths.VP()), n_classes=2
    )
    assert isinstance(clf, ClassifierGuidance) and clf.weight(0.5) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="reference="):
        from_spec("autoguidance:2", model)
    with pytest.raises(ValueError, match="differs"):
        from_spec("autoguidance:2", model, reference=mixture.model(paths.EDM()))
    with pytest.raises(ValueError, match="classifier="):
        from_spec("classifier:2", model)
