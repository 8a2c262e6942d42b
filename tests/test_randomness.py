"""The randomness module's stream contract: per-sample streams that do not depend on the batch,
the rows drawn, the dtype path or the thread count; derived seeds that do not collide; the
distributions they claim (normal moments and tails, uniform grid, exact categorical draws)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interpolant.errors import UserError
from interpolant.randomness import Streams, derive_keys, derive_seed, inverse_cdf, normal


def test_a_row_does_not_depend_on_its_batch_or_position():
    for shape in ((1,), (3,), (7,), (2, 5), (64,)):
        big = Streams(3, range(50)).normal(shape)
        for i in (0, 1, 17, 49):
            alone = Streams(3, [i]).normal(shape)
            assert torch.equal(alone[0], big[i])
        assert torch.equal(Streams(3, range(10, 20)).normal(shape), big[10:20])
        shuffled = [5, 2, 40]
        assert torch.equal(Streams(3, shuffled).normal(shape), big[shuffled])


def test_draws_advance_and_rows_keep_their_own_counter_position():
    streams, alone = Streams(0, 6), Streams(0, [4])
    first, second = streams.normal((8,)), streams.normal((8,))
    assert not torch.equal(first, second)
    assert torch.equal(alone.normal((8,))[0], first[4])
    assert torch.equal(alone.normal((8,))[0], second[4])
    # A draw for some rows only advances the counter for all: row 4's third draw is the same
    # whether or not it took part in a partial draw before.
    partial = Streams(0, 6)
    partial.normal((8,)), partial.normal((8,))
    partial.uniform((3,), rows=torch.tensor([True, False, True, False, False, False]))
    full = Streams(0, 6)
    full.normal((8,)), full.normal((8,)), full.uniform((3,))
    assert torch.equal(partial.uniform((3,))[4], full.uniform((3,))[4])


def test_float64_draws_match_float32_draws_to_rounding_and_cast_on_request():
    streams32, streams64 = Streams(1, 8), Streams(1, 8)
    z32, z64 = streams32.normal((100,)), streams64.normal((100,), dtype=torch.float64)
    assert z32.dtype == torch.float32 and z64.dtype == torch.float64
    torch.testing.assert_close(z32.double(), z64, rtol=0, atol=1e-5)
    like = torch.empty(8, 4, dtype=torch.bfloat16)
    assert Streams(1, 8).normal_like(like).dtype == torch.bfloat16


def test_values_do_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        many = Streams(9, 3000).normal((64,))
        torch.set_num_threads(1)
        one = Streams(9, 3000).normal((64,))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(many, one)


def test_normal_moments_and_the_documented_tail_cut():
    z = Streams(2, 20000).normal((50,), dtype=torch.float64).flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z**4).mean()) - 3) < 5 * math.sqrt(96 / n)
    # P(|z| > 3) = 0.0027; the values never exceed sqrt(80 log 2) = 7.45.
    tail = float((z.abs() > 3).double().mean())
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)
    assert float(z.abs().max()) <= math.sqrt(80 * math.log(2)) + 1e-12
    # Coordinates within a row and rows are uncorrelated.
    rows = z.view(20000, 50)
    corr = torch.corrcoef(rows.T)
    off = corr - torch.diag(torch.diag(corr))
    assert float(off.abs().max()) < 5 / math.sqrt(20000)


def test_uniform_grids_and_categorical_draws_are_exact():
    u64 = Streams(4, 1000).uniform((30,))
    assert u64.dtype == torch.float64 and float(u64.min()) >= 0 and float(u64.max()) < 1
    assert torch.equal(u64 * 2.0**53, torch.floor(u64 * 2.0**53))
    u32 = Streams(4, 1000).uniform((30,), dtype=torch.float32)
    assert torch.equal(u32 * 2.0**24, torch.floor(u32 * 2.0**24))
    probs = torch.tensor([0.5, 0.3, 0.2 - 1e-9, 1e-9], dtype=torch.float64)
    draws = Streams(5, 200000).categorical(probs.expand(200000, 4))
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    sd = torch.sqrt(probs * (1 - probs) / draws.numel())
    assert bool(((freq - probs).abs() < 5 * sd + 1e-12).all())
    u = torch.tensor([0.1, 0.6, 0.9], dtype=torch.float64)
    assert inverse_cdf(probs.expand(3, 4), u).tolist() == [0, 1, 2]


def test_permutations_are_permutations_per_row():
    perm = Streams(6, 4).permutation(10)
    assert perm.shape == (4, 10)
    assert all(sorted(row.tolist()) == list(range(10)) for row in perm)


def test_derived_seeds_are_distinct_across_streams_seeds_and_indices():
    seeds = {
        derive_seed(s, k, i) for s in ("a", "b", "sampler") for k in (0, 1) for i in range(200)
    }
    assert len(seeds) == 3 * 2 * 200
    assert all(0 <= s < 2**63 for s in seeds)
    # Nearby seeds do not give shifted copies of each other's streams (the additive-offset bug).
    assert derive_seed("s", 0, 1) != derive_seed("s", 1, 0)
    keys = derive_keys("sampler", 7, np.arange(5))
    assert [int(k) for k in keys] == [derive_seed("sampler", 7, i) for i in range(5)]
    assert torch.equal(normal((3,), 7, [2], "x"), Streams(7, [2], "x").normal((3,)))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(UserError, match="seed must be an int"):
        Streams(1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="3 random streams for a batch of 2"):
        Streams(0, 3).normal_like(torch.empty(2, 4))
