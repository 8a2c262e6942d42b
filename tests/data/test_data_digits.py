"""sklearn's 8x8 digits: scaling, the fixed stratified split, subsets, the missing-sklearn error."""

import sys

import numpy as np
import pytest
import torch

from interpolant.data import DIGITS_N_TEST, holdout_indices, load_dataset, load_digits

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def test_digits_shapes_range_and_raw_values():
    data = load_digits("all")
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == torch.float32
    assert float(data.x.min()) == -1.0 and float(data.x.max()) == 1.0
    raw = data.info.normalizer.inverse(data.x)[:, 0]  # back to pixel values 0..16
    expected = torch.from_numpy(sklearn_datasets.load_digits().images.astype(np.float32))
    torch.testing.assert_close(raw, expected, atol=1e-5, rtol=0)
    assert torch.equal(data.labels, torch.from_numpy(sklearn_datasets.load_digits().target))


def test_split_is_fixed_stratified_and_disjoint():
    train, test, full = load_digits("train"), load_digits("test"), load_digits("all")
    assert train.x.shape[0] == 1500 and test.x.shape[0] == DIGITS_N_TEST == 297
    counts = torch.bincount(test.labels, minlength=10)
    assert set(counts.tolist()) <= {29, 30} and int(counts.sum()) == 297

    # The 1797 images are distinct, so no test image may occur in train.
    def rows(d):
        return {tuple(r) for r in d.x.reshape(d.x.shape[0], -1).tolist()}

    assert len(rows(train)) == 1500 and not rows(train) & rows(test)
    tr_idx, te_idx = holdout_indices(1797, 297, labels=full.labels.numpy(), seed=0)
    assert torch.equal(full.x[torch.from_numpy(te_idx)], test.x)
    assert torch.equal(full.x[torch.from_numpy(tr_idx)], train.x)
    assert torch.equal(load_digits("test").x, test.x)  # deterministic


def test_holdout_indices_partition_and_quota():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, test = holdout_indices(100, 11, labels=labels, seed=1)
    assert len(test) == 11 and len(train) == 89
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
    # quotas 5.5, 3.3, 2.2 -> floors 5, 3, 2 and one extra slot to the largest remainder (class 0)
    assert np.bincount(labels[test]).tolist() == [6, 3, 2]
    train2, test2 = holdout_indices(100, 11, seed=1)
    assert len(test2) == 11 and len(np.intersect1d(train2, test2)) == 0
    with pytest.raises(ValueError, match="n_test"):
        holdout_indices(10, 11)


def test_class_subset_and_random_subset():
    some = load_digits("train", classes=[3, 7])
    assert set(some.labels.tolist()) == {3, 7}
    a = load_dataset("digits", n=100, seed=1)
    b = load_dataset("digits", n=100, seed=1)
    assert a.x.shape == (100, 1, 8, 8) and torch.equal(a.x, b.x) and a.info.n == 100
    assert not torch.equal(a.x, load_dataset("digits", n=100, seed=2).x)
    with pytest.raises(ValueError, match="n must be in"):
        load_dataset("digits", n=5000)
    with pytest.raises(ValueError, match="classes"):
        load_digits(classes=[12])


def test_missing_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"interpolant\[all\]"):
        load_digits()
