"""The user's own data: image folders, .npy/.npz arrays, CSV tables, and their clear errors."""

import numpy as np
import pytest
import torch

from interpolant.data import (
    load_array,
    load_csv,
    load_dataset,
    load_files,
    load_image_folder,
    read_image,
)

Image = pytest.importorskip("PIL.Image")


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_values_channels_and_shape(tmp_path):
    _png(tmp_path / "a.png", np.full((5, 6, 3), [255, 0, 51], dtype=np.uint8))
    _png(tmp_path / "b.png", np.full((5, 6), 102, dtype=np.uint8))  # grey
    rgba = np.zeros((5, 6, 4), dtype=np.uint8)
    rgba[..., :3], rgba[..., 3] = 204, 0  # fully transparent: alpha is dropped
    _png(tmp_path / "c.png", rgba)
    rgb = load_image_folder(tmp_path, channels=3)
    assert rgb.x.shape == (3, 3, 5, 6) and rgb.labels is None and rgb.info.split == "all"
    expect = torch.tensor([[255, 0, 51], [102, 102, 102], [204, 204, 204]]) / 255 * 2 - 1
    torch.testing.assert_close(rgb.x[:, :, 2, 3], expect.float())
    grey = load_image_folder(tmp_path, channels=1)
    luma = (0.299 * 255 + 0.114 * 51) / 255 * 2 - 1  # BT.601
    torch.testing.assert_close(
        grey.x[:, 0, 0, 0], torch.tensor([luma, 102 / 255 * 2 - 1, 204 / 255 * 2 - 1])
    )
    # The normalizer maps back to intensities in [0, 1].
    torch.testing.assert_close(rgb.info.normalizer.inverse(rgb.x)[0, 0, 0, 0], torch.tensor(1.0))


def test_image_folder_class_subfolders(tmp_path):
    for cls, value in (("cat", 10), ("dog", 250)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _png(tmp_path / cls / f"{i}.png", np.full((4, 4), value, dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_image_folder(tmp_path, channels=1)
    assert data.info.classes == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.x[2, 0, 0, 0] > 0.9 > -0.9 > data.x[0, 0, 0, 0]


def test_image_sizes_must_agree_or_be_resized(tmp_path):
    _png(tmp_path / "a.png", np.full((8, 8), 30, dtype=np.uint8))
    _png(tmp_path / "b.png", np.full((6, 10), 30, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"a\.png is \(8, 8\).*b\.png is \(6, 10\).*size="):
        load_image_folder(tmp_path, channels=1)
    data = load_image_folder(tmp_path, channels=1, size=4)
    assert data.x.shape == (2, 1, 4, 4)
    # Resizing a constant image keeps the constant.
    torch.testing.assert_close(data.x, torch.full_like(data.x, 30 / 255 * 2 - 1))


def test_backends_agree_and_16_bit_and_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    _png(tmp_path / "x.png", pixels)
    pil = read_image(tmp_path / "x.png", backend="pillow")
    mpl = read_image(tmp_path / "x.png", backend="matplotlib")
    np.testing.assert_allclose(pil, pixels / 255)
    np.testing.assert_allclose(mpl, pil, atol=1e-6)
    deep = np.full((3, 3), 40000, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_allclose(read_image(tmp_path / "deep.png")[..., 0], deep / 65535)
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(tmp_path / "y.jpg", quality=95)
    assert abs(read_image(tmp_path / "y.jpg").mean() - 128 / 255) < 0.01
    with pytest.raises(ValueError, match="backend"):
        read_image(tmp_path / "x.png", backend="opencv")


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path)
    with pytest.raises(NotADirectoryError, match="folder"):
        load_image_folder(tmp_path / "missing")


def test_npy_and_npz(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "a.npy", x)
    data = load_array(tmp_path / "a.npy")
    assert data.x.dtype == torch.float32 and torch.equal(data.x, torch.from_numpy(x).float())
    np.save(tmp_path / "v.npy", np.arange(5))
    assert load_array(tmp_path / "v.npy").x.shape == (5, 1)
    np.savez(tmp_path / "one.npz", data=x)
    assert torch.equal(load_array(tmp_path / "one.npz").x, data.x)  # the only array
    np.savez(tmp_path / "xy.npz", x=x, y=np.array([2, 0, 2, 1]), other=x + 1)
    xy = load_array(tmp_path / "xy.npz", labels_key="y")  # "x" preferred
    assert torch.equal(xy.x, data.x) and xy.labels.tolist() == [2, 0, 2, 1]
    np.savez(tmp_path / "named.npz", pts=x, names=np.array(["b", "a", "b", "c"]))
    named = load_array(tmp_path / "named.npz", key="pts", labels_key="names")
    assert named.labels.tolist() == [1, 0, 1, 2] and named.info.classes == ["a", "b", "c"]


def test_array_errors(tmp_path):
    x = np.zeros((5, 2))
    x[1, 0], x[3, 1] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(ValueError, match=r"NaN or inf in rows \(0-based\) \[1, 3\]"):
        load_array(tmp_path / "nan.npy")
    np.savez(tmp_path / "many.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(KeyError, match="choose one with key="):
        load_array(tmp_path / "many.npz")
    with pytest.raises(KeyError, match="no array named 'c'"):
        load_array(tmp_path / "many.npz", key="c")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(TypeError, match="numeric"):
        load_array(tmp_path / "s.npy")
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        load_array(tmp_path / "bad.npz", labels_key="y")


def test_array_normalisation_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal([3.0, -2.0], [5.0, 0.1], size=(200, 2))
    np.save(tmp_path / "g.npy", x)
    data = load_array(tmp_path / "g.npy", normalize="standardize", per_channel=True)
    torch.testing.assert_close(
        data.x.double().mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        data.x.double().std(0), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        data.info.normalizer.inverse(data.x).double(), torch.from_numpy(x), atol=1e-5, rtol=1e-6
    )
    with pytest.raises(ValueError, match="normalize must be"):
        load_array(tmp_path / "g.npy", normalize="zscore")


def test_csv_header_labels_and_selection(tmp_path):
    text = "# measurements\nlength,width,kind\n1.5,2,cat\n\n3,4.25,dog\n-1e-3,0,cat\n"
    (tmp_path / "t.csv").write_text(text)
    data = load_csv(tmp_path / "t.csv", label_column="kind")
    expect = torch.tensor([[1.5, 2.0], [3.0, 4.25], [-1e-3, 0.0]])
    assert torch.equal(data.x, expect)
    assert data.labels.tolist() == [0, 1, 0] and data.info.classes == ["cat", "dog"]
    assert data.info.extra["columns"] == ["length", "width"]
    only = load_csv(tmp_path / "t.csv", columns=["width"])
    assert only.x.shape == (3, 1)
    (tmp_path / "n.tsv").write_text("1\t2\t0\n3\t4\t1\n")
    plain = load_csv(tmp_path / "n.tsv", label_column=-1)  # no header detected, tab for .tsv
    assert torch.equal(
        plain.x, torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    ) and plain.labels.tolist() == [0, 1]


def test_csv_errors_name_line_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x7\n")
    with pytest.raises(ValueError, match=r"bad\.csv line 3, column 'b': 'x7' is not a number"):
        load_csv(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text("a,b\n1,2\n3,nan\n4,5\nnan,1\n")
    with pytest.raises(ValueError, match=r"NaN or inf in lines \[3, 5\]"):
        load_csv(tmp_path / "nan.csv")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="line 2: 1 fields, expected 2"):
        load_csv(tmp_path / "ragged.csv")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(KeyError, match="no column named 'c'"):
        load_csv(tmp_path / "t.csv", label_column="c")
    (tmp_path / "e.csv").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="no rows"):
        load_csv(tmp_path / "e.csv")


def test_dispatch_and_holdout_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    np.savez(tmp_path / "d.npz", x=x, y=np.repeat([0, 1], 25))
    full = load_dataset(str(tmp_path / "d.npz"), split="all", labels_key="y")
    train = load_dataset(str(tmp_path / "d.npz"), split="train", labels_key="y")
    test = load_dataset(str(tmp_path / "d.npz"), split="test", labels_key="y")
    assert full.x.shape[0] == 50 and train.x.shape[0] == 45 and test.x.shape[0] == 5
    assert sorted(train.x[:, 0].tolist() + test.x[:, 0].tolist()) == sorted(full.x[:, 0].tolist())
    assert test.labels.bincount().tolist() in ([2, 3], [3, 2])  # stratified
    assert test.info.extra["test_fraction"] == 0.1
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot load"):
        load_files(tmp_path / "f.json")
