"""Measurement operators: inpainting masks, super-resolution, blur, random projections, MRI
k-space undersampling and parallel-beam CT, all subclasses of :class:`Operator`.

Every operator here is linear and gives its exact adjoint (tests check <Ax, y> = <x, A^T y>);
masks, super-resolution, circular blur, projections and MRI also give the exact pseudo-inverse.
Image operators act on (B, C, H, W); masks and projections on any signal shape (e.g. (B, D)).
Buffers are kept in float64 and cast to the input's dtype and device on use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError, WrongTypeError
from .base import Operator, Rows


def _on(buffer: Tensor, like: Tensor) -> Tensor:
    """``buffer`` on ``like``'s device, in its dtype (complex buffers keep a complex dtype)."""
    if buffer.is_complex():
        dtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
        return buffer.to(device=like.device, dtype=dtype)
    return buffer.to(device=like.device, dtype=like.dtype)


def _image_shape(x_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(x_shape) != 3:
        raise UserError(f"{name} acts on images: x_shape must be (C, H, W), got {x_shape}")
    c, h, w = (int(s) for s in x_shape)
    return c, h, w


class Inpaint(Operator):
    """y = m ⊙ x for a fixed 0/1 mask m of shape ``x_shape`` (y keeps x's shape, zeros where
    unobserved). A is an orthogonal projection, so A^T = A^+ = A."""

    def __init__(self, mask: Tensor, noise_std: float = 0.0) -> None:
        super().__init__(tuple(mask.shape), noise_std)
        self.mask = (torch.as_tensor(mask) != 0).to(torch.float64)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return self.x_shape

    def forward(self, x: Tensor) -> Tensor:
        return _on(self.mask, x) * x

    def adjoint(self, y: Tensor) -> Tensor:
        self.check(y, "y")
        return _on(self.mask, y) * y

    def pinv(self, y: Tensor) -> Tensor:
        return self.adjoint(y)

    def measure(self, x: Tensor, seed: int | None = None, index: Rows | None = None) -> Tensor:
        """y = m ⊙ (x + noise_std n): noise only where observed, y stays 0 elsewhere (what the
        zero-filled y of the docstring and every solver's residual assume)."""
        return _on(self.mask, x) * super().measure(x, seed, index)


def random_mask(x_shape: tuple[int, ...], keep: float, seed: int = 0) -> Tensor:
    """A mask keeping each entry with probability ``keep``; images (C, H, W) share one pixel mask
    across channels."""
    if not 0.0 < keep <= 1.0:
        raise UserError(f"keep must be in (0, 1], got {keep}")
    g = torch.Generator().manual_seed(seed)
    shape = (1, *x_shape[1:]) if len(x_shape) == 3 else x_shape
    mask = (torch.rand(shape, generator=g, dtype=torch.float64) < keep).to(torch.float64)
    return mask.expand(x_shape).clone()


def box_mask(x_shape: tuple[int, ...], box: tuple[int, int, int, int] | None = None) -> Tensor:
    """A mask of ones with a hole ``box = (top, left, height, width)`` over the last two axes
    (default: the centred box of half the height and width)."""
    if len(x_shape) < 2:
        raise UserError(f"box_mask needs at least 2 spatial axes, got x_shape {x_shape}")
    h, w = x_shape[-2], x_shape[-1]
    top, left, bh, bw = box if box is not None else (h // 4, w // 4, h // 2, w // 2)
    if bh <= 0 or bw <= 0 or top < 0 or left < 0 or top + bh > h or left + bw > w:
        raise UserError(f"box {box} does not fit in an image of {h}x{w}")
    mask = torch.ones(x_shape, dtype=torch.float64)
    mask[..., top : top + bh, left : left + bw] = 0.0
    return mask


class SuperResolution(Operator):
    """Average pooling by ``factor`` (x: (C, H, W), y: (C, H/k, W/k)).

    A A^T = I / k^2, so A^T = nearest upsampling / k^2 and A^+ = k^2 A^T = nearest upsampling.
    """

    def __init__(self, x_shape: tuple[int, ...], factor: int, noise_std: float = 0.0) -> None:
        c, h, w = _image_shape(tuple(x_shape), "SuperResolution")
        if factor < 1 or h % factor or w % factor:
            raise UserError(f"factor must be >= 1 and divide H={h} and W={w}, got {factor}")
        super().__init__((c, h, w), noise_std)
        self.factor = int(factor)
        self.y_shape = (c, h // factor, w // factor)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.factor)

    def _upsample(self, y: Tensor) -> Tensor:
        if tuple(y.shape[1:]) != self.y_shape:
            raise UserError(f"y must have shape (B, *{self.y_shape}), got {tuple(y.shape)}")
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._upsample(y) / self.factor**2

    def pinv(self, y: Tensor) -> Tensor:
        return self._upsample(y)


def gaussian_kernel(std: float, size: int | None = None) -> Tensor:
    """A normalised 1-D Gaussian kernel of odd ``size`` (default 2 * ceil(3 std) + 1)."""
    if std <= 0:
        raise UserError(f"blur std must be > 0, got {std}")
    size = size if size is not None else 2 * math.ceil(3 * std) + 1
    if size % 2 != 1:
        raise UserError(f"kernel size must be odd, got {size}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-0.5 * (r / std) ** 2)
    return k / k.sum()


class GaussianBlur(Operator):
    """Separable Gaussian blur, y = k ⋆ x with 'same' output size (x, y: (C, H, W)).

    ``padding='circular'`` makes A circulant: its pseudo-inverse is exact in Fourier space, with
    frequencies whose gain is below ``rcond`` times the largest dropped (as ``torch.linalg.pinv``
    drops small singular values; the default 1e-2 is a truncated SVD that keeps A^+ y from
    amplifying measurement noise by more than 100x, as DDRM-style deblurring code does).
    ``padding='zeros'`` pads with zeros (no closed-form pinv). The adjoint is the correlation with
    the flipped kernel under the same padding.
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        std: float,
        noise_std: float = 0.0,
        padding: str = "circular",
        kernel_size: int | None = None,
        rcond: float = 1e-2,
    ) -> None:
        c, h, w = _image_shape(tuple(x_shape), "GaussianBlur")
        if padding not in ("circular", "zeros"):
            raise UserError(f"padding must be 'circular' or 'zeros', got {padding!r}")
        super().__init__((c, h, w), noise_std)
        self.kernel = gaussian_kernel(std, kernel_size)
        if self.kernel.numel() > min(h, w):
            raise UserError(f"blur kernel of size {self.kernel.numel()} exceeds image {h}x{w}")
        self.padding, self.rcond, self.y_shape = padding, float(rcond), (c, h, w)

    def _correlate(self, x: Tensor, kernel: Tensor) -> Tensor:
        c, p = x.shape[1], kernel.numel() // 2
        k = _on(kernel, x)
        kh, kw = k.view(1, 1, -1, 1).expand(c, 1, -1, 1), k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
        if self.padding == "circular":
            x = F.pad(x, (p, p, p, p), mode="circular")
            return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)
        return F.conv2d(F.conv2d(x, kh, padding=(p, 0), groups=c), kw, padding=(0, p), groups=c)

    def forward(self, x: Tensor) -> Tensor:
        return self._correlate(x, self.kernel)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check(y, "y")
        return self._correlate(y, self.kernel.flip(0))

    def transfer(self) -> Tensor:
        """The circulant's eigenvalues: the 2-D DFT of the response to a unit impulse at 0."""
        if self.padding != "circular":
            raise WrongTypeError("only circular blur is diagonal in Fourier space")
        delta = torch.zeros((1, 1, *self.x_shape[1:]), dtype=torch.float64)
        delta[..., 0, 0] = 1.0
        return torch.fft.fft2(self._correlate(delta, self.kernel))[0, 0]

    def pinv(self, y: Tensor) -> Tensor:
        if self.padding != "circular":
            return super().pinv(y)
        self.check(y, "y")
        gain = self.transfer()
        keep = gain.abs() > self.rcond * gain.abs().max()
        inv = torch.where(keep, 1.0 / torch.where(keep, gain, torch.ones_like(gain)), 0.0)
        return torch.fft.ifft2(torch.fft.fft2(y) * _on(inv, y)).real.to(y.dtype)


class MatrixOperator(Operator):
    """y = M vec(x) for an explicit (m, D) matrix; the pseudo-inverse is precomputed (SVD)."""

    def __init__(self, matrix: Tensor, x_shape: tuple[int, ...], noise_std: float = 0.0) -> None:
        super().__init__(x_shape, noise_std)
        matrix = torch.as_tensor(matrix, dtype=torch.float64)
        d = math.prod(self.x_shape)
        if matrix.ndim != 2 or matrix.shape[1] != d:
            raise UserError(f"matrix must have shape (m, {d}), got {tuple(matrix.shape)}")
        self.matrix = matrix
        self.matrix_pinv = torch.linalg.pinv(matrix)
        self.y_shape = (matrix.shape[0],)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ _on(self.matrix, x).T

    def _check_y(self, y: Tensor) -> None:
        if tuple(y.shape[1:]) != self.y_shape:
            raise UserError(f"y must have shape (B, {self.y_shape[0]}), got {tuple(y.shape)}")

    def adjoint(self, y: Tensor) -> Tensor:
        self._check_y(y)
        return (y @ _on(self.matrix, y)).reshape(y.shape[0], *self.x_shape)

    def pinv(self, y: Tensor) -> Tensor:
        self._check_y(y)
        return (y @ _on(self.matrix_pinv, y).T).reshape(y.shape[0], *self.x_shape)


class RandomProjection(MatrixOperator):
    """``m`` random Gaussian measurements with entries N(0, 1/m) from a fixed seed."""

    def __init__(
        self, x_shape: tuple[int, ...], m: int, noise_std: float = 0.0, seed: int = 0
    ) -> None:
        if m < 1:
            raise UserError(f"number of measurements m must be >= 1, got {m}")
        g = torch.Generator().manual_seed(seed)
        d = math.prod(int(s) for s in x_shape)
        matrix = torch.randn(m, d, generator=g, dtype=torch.float64) / math.sqrt(m)
        super().__init__(matrix, x_shape, noise_std)


def kspace_lines(
    width: int, acceleration: float, center_fraction: float = 0.08, seed: int = 0
) -> Tensor:
    """A 0/1 mask over the W k-space columns (FFT order, DC at index 0): the ``center_fraction``
    lowest frequencies, then random columns until W / acceleration are kept. Columns are chosen
    in conjugate pairs (f, -f), so a real image's measured k-space is conjugate-symmetric."""
    if acceleration < 1:
        raise UserError(f"acceleration must be >= 1, got {acceleration}")
    freq = torch.fft.fftfreq(width, dtype=torch.float64).abs()
    order = torch.argsort(freq, stable=True)  # lowest frequencies first
    n_keep = max(1, round(width / acceleration))
    n_center = max(1, round(width * center_fraction))
    mask = torch.zeros(width, dtype=torch.float64)
    mask[order[:n_center]] = 1.0
    mask = torch.maximum(mask, mask.flip(0).roll(1))  # close under f -> -f
    g = torch.Generator().manual_seed(seed)
    candidates = [int(j) for j in torch.randperm(width, generator=g) if mask[j] == 0]
    for j in candidates:
        if int(mask.sum()) >= n_keep:
            break
        mask[j] = 1.0
        mask[(-j) % width] = 1.0
    return mask


class MRI(Operator):
    """Single-coil Cartesian MRI: y = M ⊙ F x with the orthonormal 2-D DFT F and a line mask M.

    Measurements are real tensors (C, H, W, 2) holding real and imaginary parts
    (``torch.view_as_real``), zero on unmeasured lines, so every operator and solver works in real
    arithmetic. A^T y = Re F^H (M ⊙ y); with a conjugate-symmetric mask A^T A = F^H M F is an
    orthogonal projection and A^+ = A^T. For any mask A^+ y = F^H (m_s^+ ⊙ F A^T y) with
    m_s(f) = (M(f) + M(-f)) / 2.
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        acceleration: float = 4.0,
        noise_std: float = 0.0,
        center_fraction: float = 0.08,
        seed: int = 0,
        mask: Tensor | None = None,
    ) -> None:
        c, h, w = _image_shape(tuple(x_shape), "MRI")
        super().__init__((c, h, w), noise_std)
        lines = mask if mask is not None else kspace_lines(w, acceleration, center_fraction, seed)
        self.mask = torch.as_tensor(lines, dtype=torch.float64).expand(h, w).clone()
        flipped = torch.roll(self.mask.flip(-2, -1), (1, 1), dims=(-2, -1))  # M(-f)
        sym = 0.5 * (self.mask + flipped)
        self.gain_pinv = torch.where(sym > 0, 1.0 / sym.clamp_min(0.5), 0.0)
        self.y_shape = (c, h, w, 2)

    def forward(self, x: Tensor) -> Tensor:
        k = torch.fft.fft2(x, norm="ortho") * _on(self.mask, x)
        return torch.view_as_real(k).to(x.dtype)

    def adjoint(self, y: Tensor) -> Tensor:
        if tuple(y.shape[1:]) != self.y_shape:
            raise UserError(f"y must have shape (B, *{self.y_shape}), got {tuple(y.shape)}")
        k = torch.view_as_complex(y.contiguous()) * _on(self.mask, y)
        return torch.fft.ifft2(k, norm="ortho").real

    def pinv(self, y: Tensor) -> Tensor:
        k = torch.fft.fft2(self.adjoint(y), norm="ortho") * _on(self.gain_pinv, y)
        return torch.fft.ifft2(k, norm="ortho").real

    def zero_filled(self, y: Tensor) -> Tensor:
        """The zero-filled reconstruction F^H y (the usual baseline; equals A^+ y here)."""
        return self.pinv(y)


def radon_matrix(size: int, angles: Tensor) -> Tensor:
    """The sparse (n_angles * size, size^2) parallel-beam system matrix of ``size`` x ``size``
    images: for each angle, rotate by bilinear interpolation exactly as
    ``F.grid_sample(align_corners=False, padding_mode='zeros')`` does, then sum along columns."""
    n = size
    centres = (2 * torch.arange(n, dtype=torch.float64) + 1) / n - 1  # normalised pixel centres
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    rows, cols, vals = [], [], []
    for a, theta in enumerate(angles.tolist()):
        cos, sin = math.cos(theta), math.sin(theta)
        # Sampling point of output pixel (row i, col j) in the input: rotation of (gx, gy).
        sx, sy = cos * gx - sin * gy, sin * gx + cos * gy
        px, py = ((sx + 1) * n - 1) / 2, ((sy + 1) * n - 1) / 2  # pixel coordinates
        x0, y0 = torch.floor(px), torch.floor(py)
        out_row = a * n + torch.arange(n).expand(n, n)  # detector bin = output column j
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                weight = (1 - (px - xi).abs()) * (1 - (py - yi).abs())
                inside = (xi >= 0) & (xi < n) & (yi >= 0) & (yi < n) & (weight > 0)
                rows.append(out_row[inside])
                cols.append((yi * n + xi)[inside].long())
                vals.append(weight[inside])
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    shape = (len(angles) * n, n * n)
    return torch.sparse_coo_tensor(index, torch.cat(vals), shape, check_invariants=True).coalesce()


class CT(Operator):
    """Parallel-beam CT: the Radon transform of (C, n, n) images at ``n_angles`` equispaced
    angles in [0, pi), y of shape (C, n_angles, n) (sinogram, one detector bin per pixel).

    A is a sparse matrix built once (bilinear rotation + column sums, equal to ``grid_sample``
    rotation), so A^T (back-projection) is its exact transpose. No closed-form pinv: use
    :meth:`fbp` (filtered back-projection) or :func:`least_squares`.
    """

    def __init__(self, x_shape: tuple[int, ...], n_angles: int = 30, noise_std: float = 0.0):
        c, h, w = _image_shape(tuple(x_shape), "CT")
        if h != w:
            raise UserError(f"CT needs square images, got x_shape {x_shape}")
        if n_angles < 1:
            raise UserError(f"n_angles must be >= 1, got {n_angles}")
        super().__init__((c, h, w), noise_std)
        self.angles = torch.arange(n_angles, dtype=torch.float64) * (math.pi / n_angles)
        system = radon_matrix(h, self.angles)
        self.system, self.system_t = system, system.t().coalesce()
        self.y_shape = (c, n_angles, h)
        self._moved: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    def _apply(self, name: str, v: Tensor, out_shape: tuple[int, ...]) -> Tensor:
        key = (name, v.device, v.dtype)
        if key not in self._moved:  # move the sparse matrix once per device and dtype
            self._moved[key] = _on(getattr(self, name), v)
        flat = v.reshape(-1, v.shape[-2] * v.shape[-1]).T  # (in, B * C)
        out = (self._moved[key] @ flat.contiguous()).T
        return out.reshape(v.shape[0], *out_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._apply("system", x, self.y_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        if tuple(y.shape[1:]) != self.y_shape:
            raise UserError(f"y must have shape (B, *{self.y_shape}), got {tuple(y.shape)}")
        return self._apply("system_t", y, self.x_shape)

    def fbp(self, y: Tensor) -> Tensor:
        """Filtered back-projection: Ram-Lak filter 2|f| per projection (zero-padded to a power
        of two), back-projection, scaled by pi / (2 n_angles) as in ``skimage.iradon``; the
        constant converts our unit-pixel detector sum to the continuous Radon transform."""
        n = self.x_shape[-1]
        pad = 1 << max(6, math.ceil(math.log2(2 * n)))
        ramp = 2 * torch.fft.fftfreq(pad, dtype=torch.float64).abs()
        spec = torch.fft.fft(F.pad(y, (0, pad - n)), dim=-1) * _on(ramp, y)
        filtered = torch.fft.ifft(spec, dim=-1).real[..., :n].to(y.dtype)
        return self.adjoint(filtered) * (math.pi / (2 * len(self.angles)))


def least_squares(op: Operator, y: Tensor, x_init: Tensor | None = None, iters: int = 50) -> Tensor:
    """The minimum-norm least-squares correction by conjugate gradients on the normal equations
    (CGLS): from ``x_init`` (default 0), minimise ||A x - y||; from 0 it converges to A^+ y.
    Works for any linear operator, using only A and A^T."""
    x = torch.zeros(y.shape[0], *op.x_shape, dtype=y.dtype, device=y.device)
    x = x if x_init is None else x_init.clone()
    dims = tuple(range(1, x.ndim))
    r = y - op(x)
    s = op.adjoint(r)
    p, gamma = s, (s * s).sum(dims, keepdim=True)
    for _ in range(iters):
        q = op(p)
        qq = (q * q).sum(tuple(range(1, q.ndim))).reshape(gamma.shape)
        step = torch.where(qq > 0, gamma / qq.clamp_min(1e-300), 0.0)
        x, r = x + step * p, r - step.reshape(-1, *[1] * (q.ndim - 1)) * q
        s = op.adjoint(r)
        gamma_new = (s * s).sum(dims, keepdim=True)
        p = s + torch.where(gamma > 0, gamma_new / gamma.clamp_min(1e-300), 0.0) * p
        gamma = gamma_new
    return x


def as_matrix(op: Operator) -> Tensor:
    """The (m, D) float64 matrix of a linear operator, by applying it to the identity (small D);
    the rows are the flattened measurements."""
    if not op.linear:
        raise WrongTypeError(f"{type(op).__name__} is not linear: it has no matrix")
    d = math.prod(op.x_shape)
    eye = torch.eye(d, dtype=torch.float64).reshape(d, *op.x_shape)
    return op(eye).reshape(d, -1).T.contiguous()


def make_operator(
    spec: str, x_shape: tuple[int, ...], noise_std: float = 0.0, seed: int = 0
) -> Operator:
    """An operator from a short spec (the command line's ``--operator``):

    ``inpaint-box`` (centred half box), ``inpaint-random:0.5`` (keep each pixel with prob 0.5),
    ``sr:4`` (average-pool by 4), ``blur:1.5`` (circular Gaussian blur of std 1.5),
    ``project:32`` (32 random projections), ``mri:4`` (4x line undersampling),
    ``ct:30`` (30 projection angles). A spec like ``sr4`` (no colon) also parses.
    """
    name, _, arg = spec.strip().lower().partition(":")
    if not arg:  # "sr4" -> ("sr", "4")
        head = name.rstrip("0123456789.")
        name, arg = head, name[len(head) :]
    x_shape = tuple(int(s) for s in x_shape)
    try:
        if name == "inpaint-box":
            return Inpaint(box_mask(x_shape), noise_std)
        if name == "inpaint-random":
            return Inpaint(random_mask(x_shape, float(arg or 0.5), seed), noise_std)
        if name == "sr":
            return SuperResolution(x_shape, int(arg or 4), noise_std)
        if name == "blur":
            return GaussianBlur(x_shape, float(arg or 1.5), noise_std)
        if name == "project":
            return RandomProjection(x_shape, int(arg), noise_std, seed)
        if name == "mri":
            return MRI(x_shape, float(arg or 4), noise_std, seed=seed)
        if name == "ct":
            return CT(x_shape, int(arg or 30), noise_std)
    except UserError as err:
        raise UserError(f"operator spec {spec!r}: {err}") from err
    raise UserError(
        f"unknown operator spec {spec!r}; expected one of inpaint-box, inpaint-random:P, sr:K, "
        "blur:STD, project:M, mri:ACC, ct:ANGLES"
    )
