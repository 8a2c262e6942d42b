"""FID/KID machinery: the Inception-v3 loader on a file of random weights (pytorch-fid's key
names), KID against closed forms, FID through a feature map against the Gaussian closed form,
precision/recall on a subset with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.errors import MissingFileError, UserError
from interpolant.metrics import (
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
    polynomial_mmd2,
    precision_recall,
)
from interpolant.metrics.inception import InceptionV3, load_inception


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(file, network, state) of one random-weights file shared by the tests of this module."""
    file = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-00000000.pth"
    net, state = random_inception_file(file)
    return file, net, state


def random_inception_file(path, seed: int = 0):
    """A pytorch-fid style weights file with random weights: He-normal convolutions (so the
    activations keep their scale through 94 layers) and random BatchNorm statistics."""
    torch.manual_seed(seed)
    net = InceptionV3()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.05)
                m.running_var.uniform_(0.8, 1.2)
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)
    state = net.state_dict()
    torch.save(state, path)
    return net.eval(), state


def test_the_network_is_inception_v3():
    net = InceptionV3()
    # 94 convolutions (Szegedy et al. 2016); torchvision's Inception3 has 27,161,264 parameters,
    # of which 3,326,696 are AuxLogits and 2,049,000 the 1000-way fc: 1008 classes here.
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 94
    assert (
        sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 - 2_049_000 + 2_065_392
    )
    keys = net.state_dict()
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_6e.branch7x7dbl_5.bn.running_var",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "fc.weight",
    ):
        assert key in keys


def test_loading_a_random_weights_file(weights, tmp_path):
    file, reference, state = weights
    net = load_inception(file)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 12, 12, generator=g) * 2 - 1
    feats = net.features(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64
    assert bool(torch.isfinite(feats).all()) and float(feats.std()) > 1e-3
    # Grey images are the same images repeated over three channels; batches do not mix.
    rgb = net.features(images[:1].expand(-1, 3, -1, -1))
    torch.testing.assert_close(feats[:1], rgb, rtol=0, atol=0)
    torch.testing.assert_close(net.features(images[1:2]), feats[1:2], rtol=1e-5, atol=1e-6)
    # The same as the network built in the test, called the pytorch-fid way.
    x = torch.nn.functional.interpolate(
        images[1:].expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        torch.testing.assert_close(reference(x).double(), feats[1:], rtol=1e-5, atol=1e-6)

    # Without BatchNorm's step counters (older state dicts) it loads too.
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, tmp_path / "trimmed.pth")
    loaded = load_inception(tmp_path / "trimmed.pth").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in trimmed.items())


def test_wrong_files_are_refused_naming_the_keys(weights, tmp_path):
    state = weights[2]
    missing = dict(state)
    del missing["Mixed_7c.branch_pool.conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(
        UserError, match=r"1 missing keys \['Mixed_7c\.branch_pool\.conv\.weight'\]"
    ):
        load_inception(tmp_path / "missing.pth")
    extra = {**state, "AuxLogits.fc.weight": torch.zeros(1000, 768)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(UserError, match=r"1 unexpected keys \['AuxLogits\.fc\.weight'\]"):
        load_inception(tmp_path / "extra.pth")
    shaped = {**state, "fc.weight": torch.zeros(1000, 2048)}
    torch.save(shaped, tmp_path / "shaped.pth")
    with pytest.raises(UserError, match=r"fc\.weight \(1000, 2048\) vs \(1008, 2048\)"):
        load_inception(tmp_path / "shaped.pth")
    with pytest.raises(MissingFileError, match="never downloads"):
        load_inception(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_text("not a state dict")
    with pytest.raises(UserError, match="not a PyTorch state-dict file"):
        load_inception(tmp_path / "junk.pth")


def test_fid_through_a_feature_map_is_the_gaussian_closed_form():
    # Linear features f(x) = A x of Gaussians are Gaussian: N(A m, A C A^T).
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, generator=g, dtype=torch.float64)
    m1, m2 = torch.zeros(5, dtype=torch.float64), torch.full((5,), 0.3, dtype=torch.float64)
    l1 = torch.eye(5, dtype=torch.float64) + 0.2 * torch.randn(5, 5, generator=g).tril(-1).double()
    l2 = 0.7 * torch.eye(5, dtype=torch.float64)
    x = m1 + torch.randn(200_000, 5, generator=g, dtype=torch.float64) @ l1.T
    y = m2 + torch.randn(200_000, 5, generator=g, dtype=torch.float64) @ l2.T
    exact = frechet_distance_from_stats(a @ m1, a @ l1 @ l1.T @ a.T, a @ m2, a @ l2 @ l2.T @ a.T)
    got = frechet_distance(x, y, features=lambda v: v @ a.T)
    assert exact > 0.3
    # Sampling sd of the estimate here is ~0.02 (mostly the mean term): 3 sd.
    assert got == pytest.approx(exact, abs=0.06)


def _power_sums_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD^2 of k(a, b) = (a b + 1)^3 in 1-D from power sums:
    k = sum_j C(3, j) a^j b^j, and sum_{i != i'} x_i^j x_i'^j = S_j^2 - S_2j."""
    n, m = len(x), len(y)
    total = 0.0
    for j, c in ((0, 1), (1, 3), (2, 3), (3, 1)):
        sx, sy = float((x**j).sum()), float((y**j).sum())
        sx2, sy2 = float((x ** (2 * j)).sum()), float((y ** (2 * j)).sum())
        total += c * ((sx**2 - sx2) / (n * (n - 1)) + (sy**2 - sy2) / (m * (m - 1)))
        total -= c * 2 * sx * sy / (n * m)
    return total


def test_kid_estimator_is_the_unbiased_polynomial_mmd():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 1, generator=g, dtype=torch.float64)
    y = 0.5 + 1.3 * torch.randn(70, 1, generator=g, dtype=torch.float64)
    assert polynomial_mmd2(x, y) == pytest.approx(_power_sums_mmd2(x[:, 0], y[:, 0]), rel=1e-10)


def test_kid_of_shifted_normals_matches_the_population_value():
    # X ~ N(0, 1), Y ~ N(mu, 1) in 1-D: MMD^2 = sum_j C(3, j) (E X^j - E Y^j)^2
    #   = 3 mu^2 + 3 mu^4 + (mu^3 + 3 mu)^2.
    mu = 0.5
    exact = 3 * mu**2 + 3 * mu**4 + (mu**3 + 3 * mu) ** 2
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20_000, 1, generator=g, dtype=torch.float64)
    y = mu + torch.randn(20_000, 1, generator=g, dtype=torch.float64)
    kid = kernel_inception_distance(x, y, features="raw", n_subsets=20, subset_size=1000)
    assert kid.subset_size == 1000 and kid.n_subsets == 20
    assert abs(kid.value - exact) < 4 * kid.stderr + 0.02, (kid, exact)
    assert kid.stderr == pytest.approx(kid.std / math.sqrt(20))
    # The same seed gives the same subsets.
    again = kernel_inception_distance(x, y, features="raw", n_subsets=20, subset_size=1000)
    assert again == kid


def test_kid_is_unbiased_on_tiny_subsets():
    # Same distribution: the unbiased estimate averages to 0 even on subsets of 5, where the
    # biased (V-statistic) one would average 2 (E k(X, X) - E k(X, X')) / 5 = 2 (28 - 4) / 5.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    y = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    kid = kernel_inception_distance(x, y, features="raw", n_subsets=3000, subset_size=5)
    assert abs(kid.value) < 4 * kid.stderr and 4 * kid.stderr < 2.0, kid


def test_kid_bad_settings():
    x = torch.randn(10, 2)
    with pytest.raises(UserError, match="n_subsets"):
        kernel_inception_distance(x, x, features="raw", n_subsets=0)
    with pytest.raises(UserError, match="subset_size"):
        kernel_inception_distance(x, x, features="raw", subset_size=1)


def test_precision_recall_of_an_exact_subset():
    # Real: two far-apart blobs; fake: exactly the real points of one blob. Every fake point is
    # a real point (precision 1); exactly the real points of that blob lie in the fake
    # manifold (recall 1/2); identical sets 1/1; far-apart sets 0/0.
    g = torch.Generator().manual_seed(0)
    blobs = torch.randn(400, 3, generator=g, dtype=torch.float64)
    blobs[200:] += 1000.0
    pr = precision_recall(blobs, blobs[:200])
    assert (pr.precision, pr.recall) == (1.0, 0.5)
    assert (precision_recall(blobs, blobs).precision, precision_recall(blobs, blobs).recall) == (
        1.0,
        1.0,
    )
    far = precision_recall(blobs[:200], blobs[:200] + 1e4)
    assert (far.precision, far.recall) == (0.0, 0.0)


def test_interpolant_eval_with_inception(weights, tmp_path, capsys):
    from interpolant.api.runs import Samples, save_samples
    from interpolant.cli.main import main

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 1, 8, 8, generator=g) * 2 - 1).float()
    save_samples(Samples(x, None, {"data_config": {"name": "digits"}}), tmp_path / "s")
    out = tmp_path / "metrics.json"
    args = ["eval", str(tmp_path / "s"), "--n-reference", "4", "--out", str(out)]
    assert main([*args, "--inception", str(weights[0])]) == 0
    printed = capsys.readouterr().out
    result = __import__("json").loads(out.read_text())
    metrics = result["metrics"]
    assert {"fd_digits", "fid", "kid", "kid_stderr", "precision", "recall"} <= set(metrics)
    assert metrics["fid"] > 0 and math.isfinite(metrics["kid"])
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
    assert "Inception-v3" in result["features"] and "fid" in printed
    # fid without weights is refused with what to pass.
    assert main([*args, "--metrics", "fid"]) == 2
    assert "--inception PATH" in capsys.readouterr().err
