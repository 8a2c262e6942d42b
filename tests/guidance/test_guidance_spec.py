"""``from_spec``: the command-line strings become the right hooks with the right weights."""

from __future__ import annotations

import pytest
import torch

from interpolant import paths, sample
from interpolant.guidance import (
    CFG,
    AutoGuidance,
    ClassifierGuidance,
    GuidanceSpec,
    from_spec,
    needs_null_label,
    parse_spec,
)


def test_parse_spec_fields():
    assert parse_spec("cfg:3.0") == [
        GuidanceSpec(kind="cfg", scale=3.0, schedule="constant", interval=(0.0, 1.0))
    ]
    (p,) = parse_spec("cfg:3.0@0.2-0.8")
    assert p.interval == (0.2, 0.8)
    (p,) = parse_spec("CFG:4:cosine@1e-3-0.5")
    assert (p.scale, p.schedule, p.interval) == (4.0, "cosine", (1e-3, 0.5))
    assert [q.kind for q in parse_spec("cfg:2, autoguidance:1.5")] == ["cfg", "autoguidance"]
    # Defaults from the command line's --guidance-interval / --guidance-schedule.
    (p,) = parse_spec("cfg:2", schedule="linear", interval=(0.1, 0.7))
    assert (p.schedule, p.interval) == ("linear", (0.1, 0.7))
    (p,) = parse_spec("cfg:2@0.3-0.4", interval=(0.1, 0.7))
    assert p.interval == (0.3, 0.4)
    # The typed spec round-trips through its config.
    assert GuidanceSpec.from_config(p.config()) == p


def test_needs_null_label_is_the_kind_not_a_substring():
    assert needs_null_label("cfg:3") and needs_null_label("classifier:1, cfg:2@0-0.5")
    assert not needs_null_label("autoguidance:2") and not needs_null_label("classifier:1.5")
    assert [q.needs_null_label for q in parse_spec("autoguidance:2,cfg:1")] == [False, True]
    with pytest.raises(ValueError, match="unknown guidance"):
        needs_null_label("cfgx:2")


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
    a = sample(model, noise, hooks=[hook], **kw).x
    b = sample(model, noise, hooks=[CFG(3.0, interval=(0.2, 0.8))], **kw).x
    assert torch.equal(a, b)
    (batched,) = from_spec("cfg:3.0@0.2-0.8", model, null_cond={"class_labels": 2}, batched=True)
    assert isinstance(batched, CFG) and batched.batched
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
    with pytest.raises(ValueError, match="no option"):
        from_spec("cfg:2", model, null_label=3)
