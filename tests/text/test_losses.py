"""Discrete-diffusion bounds against exact answers on a tiny language given by an explicit law
over all V**L sequences (not Markov, so nothing special is assumed).

* The masked NELBO, integrated exactly over t (Beta weights over mask sets), equals
  -log p(x) for the exact denoiser (any-order autoregression with exact conditionals) and
  exceeds it for any other; our Monte-Carlo estimate matches the exact integral.
* The uniform-noise NELBO with the exact (time-dependent) denoiser averages to -log p(x).
"""

import math
from itertools import combinations, product

import pytest
import torch

from interpolant.paths.discrete import DiscretePath
from interpolant.text.base import mask_id
from interpolant.text.losses import (
    TextObjective,
    count_law,
    elbo_nll,
    masked_count_nelbo,
    masked_nelbo,
    prior_kl,
    stratified_times,
    subs_log_probs,
    uniform_nelbo,
)
from interpolant.text.models import CausalTransformer, DiffusionTransformer

V, L = 3, 3


class TinyLanguage:
    """A random law over all V**L sequences with its exact denoisers, by enumeration."""

    def __init__(self, seed=0, path=None):
        gen = torch.Generator().manual_seed(seed)
        self.seqs = torch.tensor(list(product(range(V), repeat=L)))
        w = torch.rand(len(self.seqs), generator=gen, dtype=torch.float64) ** 3
        self.p = w / w.sum()
        self.vocab_size, self.path = V, path

    def log_prob(self, x):
        index = (x * V ** torch.arange(L - 1, -1, -1)).sum(1)
        return self.p[index].log()

    def __call__(self, x_t, t):
        """log p(x0^i = v | x_t): masked kind if x_t holds mask ids or no path, else uniform."""
        same = x_t[:, None, :] == self.seqs[None]  # (B, N, L)
        if self.path is None or self.path.kind == "mask":
            like = (same | (x_t[:, None, :] == mask_id(V))).double().prod(-1)
        else:
            alpha = self.path.alpha(t.double()).reshape(-1, 1, 1)
            like = (alpha * same + (1 - alpha) / V).prod(-1)
        post = like * self.p[None]
        post = post / post.sum(1, keepdim=True)
        onehot = torch.nn.functional.one_hot(self.seqs, V).double()  # (N, L, V)
        return torch.einsum("bn,nlv->blv", post, onehot).clamp_min(1e-300).log()


def exact_masked_nelbo(denoiser, x):
    """int_0^1 of the masked NELBO in closed form: sum over mask sets M of
    B(|M|, L - |M| + 1) sum_{i in M} -log p(x_i | x with M masked)."""
    total = 0.0
    for n in range(1, L + 1):
        weight = math.factorial(n - 1) * math.factorial(L - n) / math.factorial(L)
        for masked in combinations(range(L), n):
            x_t = x.clone()
            x_t[0, list(masked)] = mask_id(V)
            logp = torch.log_softmax(denoiser(x_t, torch.ones(1)).double(), -1)
            total += weight * float(-sum(logp[0, i, x[0, i]] for i in masked).detach())
    return total


@pytest.mark.parametrize("k", [0, 7, 19])
def test_exact_denoiser_makes_the_masked_bound_tight(k):
    lang = TinyLanguage()
    x = lang.seqs[k : k + 1]
    assert exact_masked_nelbo(lang, x) == pytest.approx(-float(lang.log_prob(x)), rel=1e-10)


def test_other_denoisers_give_a_strictly_larger_bound():
    lang = TinyLanguage()
    torch.manual_seed(0)
    net = DiffusionTransformer(V, dim=16, depth=1, heads=2).eval()
    with torch.no_grad():
        gaps = [
            exact_masked_nelbo(net, lang.seqs[k : k + 1])
            + float(lang.log_prob(lang.seqs[k : k + 1]))
            for k in range(len(lang.seqs))
        ]
    expected_gap = sum(g * float(p) for g, p in zip(gaps, lang.p, strict=True))
    assert expected_gap > 0.05  # E_x[NELBO - NLL] = a sum of KLs, > 0 for a wrong model


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_monte_carlo_masked_nelbo_matches_the_exact_integral(schedule):
    lang, path = TinyLanguage(), DiscretePath(schedule, "mask")
    torch.manual_seed(0)
    net = DiffusionTransformer(V, dim=16, depth=1, heads=2).eval()
    x = lang.seqs[11:12]
    n = 20000
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        est = masked_nelbo(net, x.expand(n, L), path, stratified_times(n, gen), gen).double()
    exact = exact_masked_nelbo(net, x)
    assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / math.sqrt(n) + 1e-3


def test_elbo_nll_of_the_exact_denoiser_is_the_true_nll_per_token():
    lang, path = TinyLanguage(), DiscretePath("linear", "mask")
    x = lang.seqs[torch.multinomial(lang.p, 3000, True, generator=torch.Generator().manual_seed(0))]
    bound = elbo_nll(lang, x, path, n_t=4, seed=0)
    truth = -lang.log_prob(x) / L
    diff = bound - truth
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(x))
    assert float(truth.mean()) > 0.5  # a non-trivial language


def test_uniform_bound_is_tight_for_the_exact_denoiser_and_loose_otherwise():
    path = DiscretePath("linear", "uniform")
    lang = TinyLanguage(path=path)
    assert prior_kl(path, L, V) == 0.0  # alpha(1) = 0: the source is exactly uniform
    n = 40000
    gen = torch.Generator().manual_seed(2)
    for k in (4, 20):
        x = lang.seqs[k : k + 1].expand(n, L)
        est = uniform_nelbo(lang, x, path, stratified_times(n, gen), gen).double()
        stderr = float(est.std()) / math.sqrt(n)
        assert abs(float(est.mean()) + float(lang.log_prob(x[:1]))) < 4 * stderr + 1e-3
        flat = lambda x_t, t: torch.zeros(*x_t.shape, V)  # noqa: E731 - the uniform denoiser
        loose = uniform_nelbo(flat, x, path, stratified_times(n, gen), gen, V).double()
        assert float(loose.mean()) > float(est.mean()) + 0.05


def test_prior_kl_of_log_linear_uniform_path():
    path = DiscretePath("log-linear", "uniform", eps=0.1)
    c = 0.9 / V
    one = (0.1 + c) * math.log((0.1 + c) * V) + (V - 1) * c * math.log(c * V)
    assert prior_kl(path, 5, V) == pytest.approx(5 * one)


def test_subs_carries_visible_tokens_over():
    logits = torch.randn(1, 3, V)
    x_t = torch.tensor([[1, mask_id(V), 0]])
    logp = subs_log_probs(logits, x_t)
    assert logp[0, 0].exp().tolist() == [0.0, 1.0, 0.0]
    assert logp[0, 2].exp().tolist() == [1.0, 0.0, 0.0]
    torch.testing.assert_close(logp[0, 1], torch.log_softmax(logits[0, 1], -1))


def test_stratified_times_cover_every_stratum_once():
    t = stratified_times(8, torch.Generator().manual_seed(0))
    assert t.dtype == torch.float64 and bool(((t > 0) & (t <= 1)).all())
    assert sorted((torch.ceil(t * 8) - 1).long().tolist()) == list(range(8))


def test_objective_scalar_is_the_per_token_mean_and_ar_is_exact():
    torch.manual_seed(0)
    net = CausalTransformer(V, dim=16, depth=1, heads=2)
    obj = TextObjective("ar", V)
    x = torch.randint(0, V, (5, L))
    torch.testing.assert_close(obj.loss(net, x), -net.log_prob(x).mean() / L)
    torch.testing.assert_close(elbo_nll(net, x).float(), -net.log_prob(x).detach() / L)
    with pytest.raises(ValueError, match="needs a DiscretePath of kind"):
        TextObjective("mask", V, DiscretePath(kind="uniform"))
    with pytest.raises(ValueError, match="no conditioning"):
        obj.loss(net, x, cond={"class_labels": x[:, 0]})
    with pytest.raises(ValueError, match="token ids must lie"):
        obj.loss(net, torch.full((1, L), V))


def test_count_form_estimates_the_same_bound_with_lower_variance():
    # The count form (RADD eq. 15) has the exact integral's expectation, for the exact denoiser
    # (then -log p(x)) and for a network, and a smaller variance than the time form.
    lang, path = TinyLanguage(), DiscretePath("log-linear", "mask")
    torch.manual_seed(0)
    net = DiffusionTransformer(V, dim=16, depth=1, heads=2).eval()
    n = 20000
    gen = torch.Generator().manual_seed(3)
    for denoiser in (lang, net):
        x = lang.seqs[11:12].expand(n, L)
        with torch.no_grad():
            count = masked_count_nelbo(denoiser, x, stratified_times(n, gen), gen, V).double()
            time = masked_nelbo(denoiser, x, path, stratified_times(n, gen), gen, V).double()
            u = stratified_times(n, gen)
            sqrt = masked_count_nelbo(denoiser, x, u, gen, V, law="inverse-sqrt").double()
        exact = exact_masked_nelbo(denoiser, x[:1])
        for estimate in (count, sqrt):
            se = float(estimate.std()) / math.sqrt(n)
            assert abs(float(estimate.mean()) - exact) < 4 * se + 1e-6
        assert float(count.var()) < 0.5 * float(time.var())
    assert exact_masked_nelbo(lang, x[:1]) == pytest.approx(-float(lang.log_prob(x[:1])))
    objective = TextObjective("mask", V, path)
    assert objective.estimator == "count-sqrt" and objective.config()["estimator"] == "count-sqrt"
    assert "estimator" not in TextObjective("mask", V, path, "time").config()


def test_inverse_sqrt_count_law():
    # p(k) ∝ k^(-1/2) on 1..L, and the stratified quantiles hit every k with the law's frequency.
    p = count_law(L, "inverse-sqrt")
    k = torch.arange(1, L + 1, dtype=torch.float64)
    torch.testing.assert_close(p, k.rsqrt() / k.rsqrt().sum())
    torch.testing.assert_close(count_law(L, "uniform"), torch.full((L,), 1.0 / L, dtype=p.dtype))
    with pytest.raises(ValueError, match="count law"):
        count_law(L, "cubic")


def test_inverse_sqrt_law_lowers_the_gradient_noise_by_the_predicted_factor():
    # At the optimum the bound's gradient has mean 0 and is pure per-token noise. With i.i.d.
    # tokens (order 0; the model is the exact law plus a bias b, gradient at b = 0) the terms
    # of distinct tokens are independent with one variance s2, so a row's gradient has variance
    # s2 sum_k 1 / (k p(k)) (module docstring): L H_L s2 for the uniform law, Z^2 s2 for
    # p(k) = k^(-1/2) / Z. Both are measured, and their ratio must match Z^2 / (L H_L).
    from interpolant.text.markov import UnigramLanguage

    length, n, vocab = 32, 30000, 3
    lang = UnigramLanguage(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), length)
    x = lang.sample(n, torch.Generator().manual_seed(0))
    variance = {}
    for law in ("uniform", "inverse-sqrt"):
        bias = torch.zeros(n, 1, vocab, dtype=torch.float64, requires_grad=True)
        gen = torch.Generator().manual_seed(1)
        u = stratified_times(n, gen)

        def model(z: torch.Tensor, t: torch.Tensor, bias: torch.Tensor = bias) -> torch.Tensor:
            return lang(z, t) + bias

        masked_count_nelbo(model, x, u, gen, vocab, law).sum().backward()
        grad = bias.grad[:, 0]  # (n, V): one row's gradient per row
        se = grad.std(0) / math.sqrt(n)
        assert bool((grad.mean(0).abs() < 4 * se).all())  # mean 0 at the optimum
        variance[law] = float(grad.var(0).sum())
    k = torch.arange(1, length + 1, dtype=torch.float64)
    predicted = float(k.rsqrt().sum() ** 2 / (length * (1 / k).sum()))  # 0.761 at L = 32
    assert variance["inverse-sqrt"] / variance["uniform"] == pytest.approx(predicted, rel=0.05)
