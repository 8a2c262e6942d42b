"""The user's own data: a folder of images, ``.npy``/``.npz`` arrays, CSV tables.

Every loader returns ``LoadedData(x, labels, info)`` like the built-in sets: float32 (N, ...)
in model space, int64 labels or None, and :class:`~.base.DataInfo` with the normalizer. Bad
input fails early and says where: the file, the CSV line and column, the rows holding NaNs.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError
from .base import DataInfo, LoadedData
from .stats import Normalizer

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ARRAY_SUFFIXES = (".npy", ".npz")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's "L" conversion


def _first(items: Sequence[Any], k: int = 10) -> str:
    """A short list for error messages."""
    shown = ", ".join(str(i) for i in items[:k])
    return f"[{shown}{', ...' if len(items) > k else ''}] ({len(items)} in all)"


def check_finite(x: np.ndarray, source: str, row_names: Sequence[Any] | None = None) -> None:
    """Refuse NaN/inf, naming the rows (or ``row_names``, e.g. CSV line numbers) that hold them."""
    bad = np.flatnonzero(~np.isfinite(x.reshape(x.shape[0], -1)).all(1))
    if bad.size:
        rows = [row_names[int(i)] for i in bad] if row_names is not None else bad.tolist()
        what = "lines" if row_names is not None else "rows (0-based)"
        raise ValueError(f"{source}: NaN or inf in {what} {_first(rows)}")


def _normalizer(x: Tensor, normalize: str | None, per_channel: bool) -> Normalizer:
    if normalize in (None, "none", "identity"):
        return Normalizer.identity()
    if normalize not in ("standardize", "range"):
        raise ValueError(f"normalize must be None, 'standardize' or 'range', got {normalize!r}")
    return Normalizer.fit(x, normalize, per_channel=per_channel)


def _int_labels(raw: np.ndarray, n: int, source: str) -> tuple[Tensor, list[str]]:
    """Labels as int64 indices plus class names: integers keep their values, others are ranked."""
    raw = np.asarray(raw)
    if raw.ndim != 1 or raw.shape[0] != n:
        raise ValueError(f"{source}: labels must have shape ({n},), got {raw.shape}")
    if raw.dtype.kind in "biuf":
        if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
            raise ValueError(f"{source}: numeric labels must be whole numbers")
        ints = raw.astype(np.int64)
        if ints.min() < 0:
            raise ValueError(f"{source}: numeric labels must be >= 0, got min {ints.min()}")
        return torch.from_numpy(ints), [str(c) for c in range(int(ints.max()) + 1)]
    names, index = np.unique(raw.astype(str), return_inverse=True)
    return torch.from_numpy(index.astype(np.int64)), [str(c) for c in names]


# ----------------------------------------------------------------------------- images


def read_image(path: str | Path, backend: str = "auto") -> np.ndarray:
    """One image as float64 (H, W, C) in [0, 1], C in {1, 2, 3, 4} (grey, grey+alpha, RGB, RGBA).

    ``backend``: "pillow", "matplotlib" (``matplotlib.image.imread``) or "auto" (Pillow if
    installed). 8-bit images are divided by 255, 16-bit ones by 65535.
    """
    if backend not in ("auto", "pillow", "matplotlib"):
        raise ValueError(f"backend must be 'auto', 'pillow' or 'matplotlib', got {backend!r}")
    arr: np.ndarray
    if backend != "matplotlib":
        try:
            from PIL import Image
        except ImportError:
            if backend == "pillow":
                raise ImportError("backend='pillow' needs Pillow: pip install Pillow") from None
            backend = "matplotlib"
        else:
            with Image.open(path) as im:
                if im.mode == "1":
                    im = im.convert("L")
                elif im.mode in ("P", "PA"):
                    im = im.convert(
                        "RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB"
                    )
                elif im.mode not in ("L", "LA", "RGB", "RGBA") and not im.mode.startswith("I"):
                    im = im.convert("RGB")
                arr = np.asarray(im)
    if backend == "matplotlib":
        try:
            import matplotlib.image as mpimg
        except ImportError as err:
            raise ImportError(
                "reading images needs Pillow or matplotlib: pip install 'interpolant[all]'"
            ) from err
        arr = np.asarray(mpimg.imread(path))
    if arr.dtype == np.uint8:
        out = arr.astype(np.float64) / 255
    elif arr.dtype.kind in "iu":
        out = arr.astype(np.float64) / 65535  # 16-bit ("I;16", "I") images
    else:
        out = arr.astype(np.float64)
    return out[..., None] if out.ndim == 2 else out


def to_channels(img: np.ndarray, channels: int, source: str = "image") -> np.ndarray:
    """(H, W, C) to (H, W, ``channels``): drop alpha, grey <-> RGB (BT.601 luma)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    c = img.shape[-1]
    if c not in (1, 2, 3, 4):
        raise ValueError(f"{source}: cannot read {c} channels as an image")
    colour = img[..., :3] if c >= 3 else img[..., :1]  # alpha dropped
    if channels == 1:
        return colour if colour.shape[-1] == 1 else colour @ LUMA[:, None]
    return colour if colour.shape[-1] == 3 else np.repeat(colour, 3, axis=-1)


def _image_files(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """Image files directly in ``folder``; else one subfolder per class (ImageFolder layout)."""
    direct = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if direct:
        return direct, None, None
    files: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if found:
            labels += [len(classes)] * len(found)
            classes.append(sub.name)
            files += found
    if not files:
        raise ValueError(
            f"{folder}: no images (suffixes {', '.join(IMAGE_SUFFIXES)}) in the folder "
            "or in class subfolders"
        )
    return files, labels, classes


def decode_image(
    path: str | Path, channels: int, hw: tuple[int, int] | None = None, backend: str = "auto"
) -> Tensor:
    """One image file as float64 (channels, H, W) intensities in [0, 1]; ``hw`` resizes it with
    antialiased bilinear interpolation (the in-memory and the streaming readers share this)."""
    img = to_channels(read_image(path, backend), channels, str(path))
    chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    if hw is not None and tuple(chw.shape[1:]) != hw:
        resized = F.interpolate(chw[None], size=hw, mode="bilinear", antialias=True)
        chw = resized[0].clamp(0, 1)
    return chw


def image_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` (an int or (H, W)) as (H, W), or None."""
    hw = (size, size) if isinstance(size, int) else None if size is None else tuple(size)
    if hw is not None and (len(hw) != 2 or min(hw) < 1):
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    return None if hw is None else (int(hw[0]), int(hw[1]))


def load_image_folder(
    folder: str | Path,
    channels: int = 3,
    size: int | tuple[int, int] | None = None,
    backend: str = "auto",
    stream: bool = False,
    on_bad_image: str = "raise",
) -> LoadedData:
    """Images of a folder as (N, channels, H, W) in [-1, 1] (raw values are intensities in [0, 1]).

    Images directly inside ``folder`` are unlabelled; if there are none, each subfolder is a
    class (sorted names, labels 0, 1, ...). ``size`` (an int or (H, W)) resizes every image with
    antialiased bilinear interpolation; without it all images must share one size.
    ``stream=True``: ``x`` is a reader that decodes images when they are read
    (:class:`~.streaming.ImageFolderStream`). ``on_bad_image``: "raise" refuses a file that does
    not decode (naming it); "skip" puts the next image that decodes in its place.
    """
    if stream or on_bad_image != "raise":
        from .streaming import ImageFolderStream

        reader = ImageFolderStream(folder, channels, size, backend, on_bad_image)
        if stream:
            return reader.loaded()
        loaded = reader.loaded()
        loaded.info.extra.update(replaced=dict(reader.replaced))
        return loaded._replace(x=reader.to_tensor())
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"folder must be a directory of images, got {str(folder)!r}")
    files, labels, classes = _image_files(root)
    hw = image_size(size)
    images: list[Tensor] = []
    for path in files:
        try:
            chw = decode_image(path, channels, hw, backend)
        except (OSError, SyntaxError) as err:  # what Pillow raises for a damaged file
            raise UserError(
                f"cannot decode image {path} ({type(err).__name__}: {err}); fix or remove it, "
                "or set on_bad_image='skip' to put the next image in its place"
            ) from None
        if hw is None and images and chw.shape != images[0].shape:
            first = files[0].name
            raise ValueError(
                f"images differ in size: {first} is {tuple(images[0].shape[1:])} (H, W), "
                f"{path.name} is {tuple(chw.shape[1:])}; pass size=(H, W) to resize them"
            )
        images.append(chw)
    normalizer = Normalizer.from_range(0.0, 1.0)
    x = normalizer(torch.stack(images).float())
    info = DataInfo(
        name=root.name,
        shape=tuple(x.shape[1:]),
        n=x.shape[0],
        split="all",
        normalizer=normalizer,
        classes=classes,
        source=str(root),
        extra={"files": [str(p.relative_to(root)) for p in files]},
    )
    return LoadedData(x, None if labels is None else torch.tensor(labels), info)


# ----------------------------------------------------------------------------- arrays


def _pick_key(keys: list[str], key: str | None, source: str) -> str:
    if key is not None:
        if key not in keys:
            raise KeyError(f"{source}: no array named {key!r}; it holds {keys}")
        return key
    if len(keys) == 1:
        return keys[0]
    for default in ("x", "arr_0"):
        if default in keys:
            return default
    raise KeyError(f"{source} holds several arrays {keys}; choose one with key=")


def load_array(
    path: str | Path,
    key: str | None = None,
    labels_key: str | None = None,
    normalize: str | None = None,
    per_channel: bool = False,
    stream: bool = False,
) -> LoadedData:
    """Data from a ``.npy`` or ``.npz`` file: rows are samples, (N,) is read as (N, 1).

    For ``.npz``, ``key`` names the data array (default: the only one, else "x", else "arr_0")
    and ``labels_key`` an optional (N,) label array. ``normalize``: None (keep values),
    "standardize" or "range" (fitted, globally or ``per_channel`` along axis 1).
    ``stream=True``: ``x`` is a memory map's reader (:class:`~.streaming.ArrayStream`) that
    reads rows when they are asked for; it keeps the stored values (``normalize`` would need
    every row: normalise the file beforehand, or pack shards).
    """
    if stream:
        if normalize not in (None, "none", "identity"):
            raise UserError(
                f"normalize={normalize!r} is fitted on every row, which a stream does not hold; "
                "store normalised values, or load the file into memory (stream=false)"
            )
        from .streaming import ArrayStream

        return ArrayStream(path, key, labels_key).loaded()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path must be an existing .npy/.npz file, got {str(path)!r}")
    raw_labels = None
    if p.suffix.lower() == ".npy":
        if labels_key is not None:
            raise ValueError(f"{p.name}: a .npy file holds one array; labels_key needs a .npz")
        arr = np.load(p, allow_pickle=False)
        name = ""
    elif p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.files)
            name = _pick_key(keys, key, p.name)
            arr = z[name]
            if labels_key is not None:
                raw_labels = z[_pick_key(keys, labels_key, p.name)]
    else:
        raise ValueError(f"path must end in .npy or .npz, got {p.name!r}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{p.name}: array must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{p.name}: array must have shape (N, ...) with N >= 1, got {arr.shape}")
    arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr
    check_finite(arr.astype(np.float64), p.name)
    labels, classes = (None, None)
    if raw_labels is not None:
        labels, classes = _int_labels(raw_labels, arr.shape[0], f"{p.name}[{labels_key!r}]")
    x = torch.from_numpy(arr.astype(np.float32))
    normalizer = _normalizer(x, normalize, per_channel)
    info = DataInfo(
        name=p.stem,
        shape=tuple(x.shape[1:]),
        n=x.shape[0],
        split="all",
        normalizer=normalizer,
        classes=classes,
        source=str(p),
        extra={"key": name, "labels_key": labels_key},
    )
    return LoadedData(normalizer(x), labels, info)


# ----------------------------------------------------------------------------- tables


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column_index(spec: int | str, header: list[str] | None, width: int, source: str) -> int:
    if isinstance(spec, int):
        if not -width <= spec < width:
            raise IndexError(f"{source}: column {spec} out of range for {width} columns")
        return spec % width
    if header is None:
        raise ValueError(f"{source}: column {spec!r} given by name but the file has no header")
    if spec not in header:
        raise KeyError(f"{source}: no column named {spec!r}; columns are {header}")
    return header.index(spec)


def load_csv(
    path: str | Path,
    label_column: int | str | None = None,
    columns: Sequence[int | str] | None = None,
    header: bool | str = "auto",
    delimiter: str | None = None,
    normalize: str | None = None,
    per_channel: bool = True,
) -> LoadedData:
    """A numeric table as (N, D): one row per sample, one feature per column.

    ``header="auto"`` treats the first row as names when some cell in it is not a number while
    the cell below it is. ``label_column`` (name or index) becomes the labels (whole numbers keep
    their values; text is ranked into classes); ``columns`` picks the features (default: all
    others). ``delimiter`` defaults to tab for .tsv, else ",". Lines starting with "#" and blank
    lines are skipped. ``normalize`` as in :func:`load_array` (per column by default).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path must be an existing CSV file, got {str(path)!r}")
    sep = delimiter or ("\t" if p.suffix.lower() == ".tsv" else ",")
    with open(p, newline="", encoding="utf-8-sig") as f:
        lines = [
            (no, [c.strip() for c in row])
            for no, row in enumerate(csv.reader(f, delimiter=sep), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
        ]
    if not lines:
        raise ValueError(f"{p.name}: the file has no rows")
    width = len(lines[0][1])
    for no, row in lines:
        if len(row) != width:
            raise ValueError(f"{p.name} line {no}: {len(row)} fields, expected {width}")
    if header == "auto":
        first, second = lines[0][1], lines[1][1] if len(lines) > 1 else None
        has_header = any(
            not _is_number(a) and (second is None or _is_number(b))
            for a, b in zip(first, second or first)
        )
    elif isinstance(header, bool):
        has_header = header
    else:
        raise ValueError(f"header must be True, False or 'auto', got {header!r}")
    names = lines[0][1] if has_header else None
    body = lines[1:] if has_header else lines
    if not body:
        raise ValueError(f"{p.name}: the file has a header but no data rows")
    label_idx = None if label_column is None else _column_index(label_column, names, width, p.name)
    if columns is None:
        feature_idx = [j for j in range(width) if j != label_idx]
    else:
        feature_idx = [_column_index(c, names, width, p.name) for c in columns]
    if not feature_idx:
        raise ValueError(f"{p.name}: no feature columns left")
    line_no = [no for no, _ in body]
    cells = np.array([row for _, row in body], dtype=object)
    x = np.empty((len(body), len(feature_idx)), dtype=np.float64)
    for out_j, j in enumerate(feature_idx):
        try:
            x[:, out_j] = np.asarray(cells[:, j], dtype=np.float64)
        except ValueError:
            i = next(i for i, c in enumerate(cells[:, j]) if not _is_number(c))
            col = repr(names[j]) if names else f"{j} (0-based)"
            raise ValueError(
                f"{p.name} line {line_no[i]}, column {col}: {cells[i, j]!r} is not a number"
            ) from None
    check_finite(x, p.name, row_names=line_no)
    labels, classes = (None, None)
    if label_idx is not None:
        raw = cells[:, label_idx].astype(str)
        as_num = raw.astype(np.float64) if all(_is_number(c) for c in raw) else raw
        labels, classes = _int_labels(as_num, len(body), f"{p.name} label column")
    xt = torch.from_numpy(x.astype(np.float32))
    normalizer = _normalizer(xt, normalize, per_channel)
    info = DataInfo(
        name=p.stem,
        shape=(len(feature_idx),),
        n=len(body),
        split="all",
        normalizer=normalizer,
        classes=classes,
        source=str(p),
        extra={"columns": [names[j] if names else j for j in feature_idx]},
    )
    return LoadedData(normalizer(xt), labels, info)


def load_files(path: str | Path, **kwargs: Any) -> LoadedData:
    """Dispatch on the path: a folder of images, a .npy/.npz array, a .csv/.tsv/.txt table."""
    p = Path(path)
    if p.is_dir():
        return load_image_folder(p, **kwargs)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    suffix = p.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return load_array(p, **kwargs)
    if suffix in TABLE_SUFFIXES:
        return load_csv(p, **kwargs)
    raise ValueError(
        f"cannot load {p.name!r}: expected a folder of images, {'/'.join(ARRAY_SUFFIXES)} "
        f"or {'/'.join(TABLE_SUFFIXES)}"
    )
