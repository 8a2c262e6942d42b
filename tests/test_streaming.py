"""On-disk readers (data/streaming.py) and shards (data/shards.py): the same values as the
in-memory loaders, memory maps that read only the rows asked for, bad input refused by name."""

from __future__ import annotations

import json
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from interpolant.data import load_array, load_dataset, load_image_folder
from interpolant.data.shards import (
    MANIFEST,
    ShardError,
    ShardStream,
    read_manifest,
    verify_shards,
    write_shards,
)
from interpolant.data.streaming import ArrayStream, ImageFolderStream, open_stream
from interpolant.errors import UserError


def _images(folder, n=6, size=(10, 12), mode="RGB", classes=("cat", "dog")):
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / classes[i % len(classes)]
        sub.mkdir(parents=True, exist_ok=True)
        shape = (*size, 3) if mode == "RGB" else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(sub / f"{i}.png")
    return folder


# ----------------------------------------------------------------------------- arrays


def test_array_stream_reads_what_load_array_reads(tmp_path):
    x = np.random.default_rng(1).normal(size=(37, 3, 4)).astype(np.float32)
    y = np.arange(37) % 5
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    stream = ArrayStream(tmp_path / "x.npy")
    assert stream.shape == (37, 3, 4) and len(stream) == 37
    assert torch.equal(stream[:], load_array(tmp_path / "x.npy").x)
    member = ArrayStream(tmp_path / "xy.npz", labels_key="y")  # a memory map into the zip
    assert torch.equal(member[[5, 2, 36]], torch.from_numpy(x[[5, 2, 36]]))
    assert torch.equal(member[4], torch.from_numpy(x[4]))
    assert torch.equal(member.labels, torch.from_numpy(y))
    assert isinstance(member._array(), np.memmap)


def test_memory_map_never_loads_the_whole_array(tmp_path):
    """A 64 MB file: opening, fingerprinting (64 sampled rows) and reading 10 rows allocate a
    few copies of those 74 rows (16 KB each), not the file, and ``rows_read`` counts exactly the
    rows asked for; loading the file in memory (load_array) allocates its whole size, so the
    check can fail."""
    rows, width = 4096, 4096
    np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float32, (rows, width))[:] = 1.0
    size = rows * width * 4
    tracemalloc.start()
    stream = ArrayStream(tmp_path / "big.npy")
    stream.fingerprint()
    batch = stream[np.arange(0, rows, rows // 10)[:10]]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert batch.shape == (10, width) and bool((batch == 1).all())
    assert stream.rows_read == 10
    assert peak < 4 * 74 * width * 4 < 0.1 * size, peak
    tracemalloc.start()
    load_array(tmp_path / "big.npy")
    _, peak_in_memory = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_in_memory > size


def test_compressed_npz_and_nan_rows_are_refused(tmp_path):
    x = np.zeros((8, 2), np.float32)
    np.savez_compressed(tmp_path / "c.npz", x=x)
    with pytest.raises(UserError, match=r"compressed .* cannot be memory-mapped"):
        ArrayStream(tmp_path / "c.npz")
    x[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    stream = ArrayStream(tmp_path / "nan.npy")
    assert torch.equal(stream[[0, 1]], torch.zeros(2, 2))
    with pytest.raises(UserError, match=r"NaN or inf in lines \[5\]"):
        stream[[4, 5]]


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_stream_decodes_like_the_in_memory_loader(tmp_path, channels):
    folder = _images(tmp_path / "imgs")
    memory = load_image_folder(folder, channels=channels, size=(6, 8))
    stream = ImageFolderStream(folder, channels=channels, size=(6, 8))
    assert stream.shape == (6, channels, 6, 8)
    assert torch.equal(stream[:], memory.x)
    assert torch.equal(stream.labels, memory.labels) and stream.classes == ["cat", "dog"]


def test_grey_images_keep_their_size_and_other_sizes_are_refused(tmp_path):
    folder = _images(tmp_path / "grey", n=3, mode="L", classes=("a",))
    stream = ImageFolderStream(folder, channels=1)
    assert stream.sample_shape == (1, 10, 12)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "a" / "9.png")
    with pytest.raises(UserError, match=r"9.png is \(5, 5\).*pass size="):
        ImageFolderStream(folder, channels=1)[:]


def _with_bad_image(tmp_path):
    folder = _images(tmp_path / "bad", n=6, classes=("a",))
    (folder / "a" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def test_bad_image_raise_names_the_file(tmp_path):
    stream = ImageFolderStream(_with_bad_image(tmp_path), on_bad_image="raise")
    assert stream[[0, 1]].shape == (2, 3, 10, 12)
    with pytest.raises(UserError, match=r"cannot decode image .*2\.png.*on_bad_image='skip'"):
        stream[[1, 2]]


def test_bad_image_skip_is_deterministic_and_counted(tmp_path):
    """The file at index 2 (sorted names 0, 1, 2, 3, 4, 5) is replaced by index 3, the next one
    that decodes, whoever reads it; the trainer logs it once and keeps its batch size."""
    folder = _with_bad_image(tmp_path)
    stream = ImageFolderStream(folder, on_bad_image="skip")
    x, used = stream.fetch([2, 0])
    assert used.tolist() == [3, 0] and torch.equal(x[0], stream[3])
    assert list(stream.replaced) == [2]
    from interpolant.train import TrainConfig, Trainer
    from interpolant.train.build import build_network, build_objective

    cfg = TrainConfig.from_dict(
        dict(model={"name": "mlp", "dim": 360, "width": 16, "depth": 1}, device="cpu",
             run_dir=str(tmp_path / "run"), steps=3, batch_size=6, progress=False)
    )  # fmt: skip
    net = build_network(cfg)
    trainer = Trainer(net, build_objective(cfg, net.path), ImageFolderStream(folder, 3, None,
                      on_bad_image="skip"), cfg)  # fmt: skip
    trainer.run()
    assert trainer.feed is not None and trainer.feed.replaced == {2: 3}
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.count("failed to decode") == 1 and "2.png" in log


# ----------------------------------------------------------------------------- shards


@pytest.fixture
def packed(tmp_path):
    x = torch.randn(50, 2, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(50) % 4
    out = write_shards(x, tmp_path / "shards", 16, labels=labels, name="toy", progress=False)
    return x, labels, out


def test_shards_round_trip_with_manifest(packed):
    x, labels, out = packed
    manifest = read_manifest(out)
    assert manifest["n"] == 50 and manifest["shape"] == [2, 3] and manifest["dtype"] == "float32"
    ranges = [(s["start"], s["stop"]) for s in manifest["shards"]]
    assert ranges == [(0, 16), (16, 32), (32, 48), (48, 50)]
    stream = ShardStream(out)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(stream[order], x[order])  # rows from every shard, in any order
    assert torch.equal(stream.labels, labels)
    assert verify_shards(out)["fingerprint"] == stream.fingerprint()
    # The fingerprint is that of the contents: a second pack of the same rows has it too.
    again = write_shards(x, out.parent / "again", 16, labels=labels, name="toy", progress=False)
    assert ShardStream(again).fingerprint() == stream.fingerprint()


def test_a_shard_of_another_data_set_is_refused(packed, tmp_path):
    x, labels, out = packed
    other = write_shards(x + 1, tmp_path / "other", 16, labels=labels, name="toy", progress=False)
    (out / "shard-00001.safetensors").write_bytes((other / "shard-00001.safetensors").read_bytes())
    with pytest.raises(ShardError, match=r"shard-00001.safetensors: field 'pack_id' is"):
        ShardStream(out)
    named = write_shards(x, tmp_path / "named", 16, labels=labels, name="faces", progress=False)
    (out / "shard-00001.safetensors").write_bytes((named / "shard-00001.safetensors").read_bytes())
    with pytest.raises(ShardError, match=r"field 'dataset' is 'faces', the manifest says 'toy'"):
        ShardStream(out)


def test_another_format_version_is_refused(packed):
    _, _, out = packed
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(ShardError, match=r"field 'version' is 99; this interpolant reads"):
        ShardStream(out)


def test_altered_contents_fail_verification(packed):
    _, _, out = packed
    path = out / "shard-00002.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # a flipped byte inside the tensor data: same size, header intact
    path.write_bytes(bytes(raw))
    ShardStream(out)  # the cheap header check passes
    with pytest.raises(ShardError, match=r"shard-00002.safetensors: field 'sha256' of its"):
        verify_shards(out)


def test_uint8_image_shards_and_the_registry(tmp_path):
    folder = _images(tmp_path / "imgs", n=10)
    out = write_shards(ImageFolderStream(folder), tmp_path / "u8", 4, dtype="uint8",
                       progress=False)  # fmt: skip
    stream = ShardStream(out)
    memory = load_image_folder(folder)
    # 8-bit images, no resize: uint8 storage is lossless up to float32 rounding.
    torch.testing.assert_close(stream[:], memory.x, atol=1e-6, rtol=0)
    assert (out / "shard-00000.safetensors").stat().st_size < 4 * 3 * 10 * 12 + 1000
    # data.name=<shard folder> streams (unless stream=false); stream=true on a folder streams;
    # the test split is
    # read into memory (eval compares in memory).
    assert not isinstance(load_dataset(str(out), split="all").x, torch.Tensor)
    assert isinstance(load_dataset(str(out), split="all", stream=False).x, torch.Tensor)
    train = load_dataset(str(folder), split="train", stream=True, test_fraction=0.2)
    assert not isinstance(train.x, torch.Tensor) and train.x.shape == (8, 3, 10, 12)
    test = load_dataset(str(folder), split="test", stream=True, test_fraction=0.2)
    assert isinstance(test.x, torch.Tensor) and test.x.shape == (2, 3, 10, 12)
    assert open_stream(out).kind == "shards" and open_stream(folder).kind == "image-folder"
    with pytest.raises(UserError, match="its only data option is stream"):
        load_dataset(str(out), stream="yes")


def test_npz_member_offsets(tmp_path):
    """The memory map of an .npz member starts at the member's .npy data, whatever the zip's
    local header holds."""
    a, b = np.arange(12.0).reshape(3, 4), np.ones((2, 2), np.int16)
    np.savez(tmp_path / "ab.npz", a=a, b=b)
    with zipfile.ZipFile(tmp_path / "ab.npz") as z:
        assert [i.compress_type for i in z.infolist()] == [zipfile.ZIP_STORED] * 2
    assert torch.equal(ArrayStream(tmp_path / "ab.npz", key="b")[:], torch.ones(2, 2))
    assert torch.equal(ArrayStream(tmp_path / "ab.npz", key="a")[:], torch.from_numpy(a).float())
