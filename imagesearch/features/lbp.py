"""Uniform LBP (local binary pattern) texture histograms of garment crops (SPEC §3 stage 6).

The codes are rotation-invariant uniform LBP, bit for bit what
`skimage.feature.local_binary_pattern(gray, P, R, method="uniform")` returns: P circle samples at
radius R, bilinearly interpolated (the R=1 diagonal points fall between pixels), pixels outside the
image read as 0, a sample >= the centre sets its bit; a pattern with at most two 0/1 transitions
gets its number of ones (0..P), every other pattern gets P + 1.

Why hand-written rather than calling scikit-image: scikit-image is a dev-only dependency (it is the
oracle in tests/unit/test_lbp.py), and it computes one image at a time on one CPU core. Here one
batched torch computation covers a whole stack of resized crops, on CPU or GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from imagesearch.runtime import progress_bar

__all__ = ["grid_histograms", "lbp_codes", "lbp_codes_batch", "lbp_dim", "lbp_histogram", "lbp_histograms"]


def lbp_dim(grid: tuple[int, int] = (2, 2), P: int = 8) -> int:
    """Length of the descriptor: grid cells x (P + 2) uniform-LBP bins.

    >>> lbp_dim((4, 4), 8)
    160
    """
    return grid[0] * grid[1] * (P + 2)


def _circle_offsets(P: int, R: float) -> tuple[np.ndarray, np.ndarray]:
    # Same angles, signs and 5-decimal rounding as scikit-image, so the interpolation weights (and
    # hence the >= comparisons at ties) are identical.
    angles = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    return np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)


def lbp_codes_batch(gray: torch.Tensor, P: int = 8, R: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniform LBP codes of a batch of grey images.

    Args:
        gray: (N, H, W) grey levels (any real dtype), on any device.
        P: number of circle samples (1..31).
        R: circle radius in pixels.
        dtype: arithmetic dtype. float64 reproduces scikit-image exactly; float32 is faster on GPU
            but may flip a bit where an interpolated sample ties with the centre.

    Returns:
        (N, H, W) int64 codes in 0..P+1.
    """
    if gray.ndim != 3:
        raise ValueError(f"gray must be (N, H, W), got shape {tuple(gray.shape)}")
    if not 1 <= P <= 31 or R <= 0:
        raise ValueError(f"need 1 <= P <= 31 and R > 0, got P={P}, R={R}")
    n, h, w = gray.shape
    # Chunks of ~256k pixels keep the working set in cache on CPU (a 256-crop batch at once runs
    # about 3x slower per pixel); on GPU one chunk per call is fine.
    per_chunk = n if gray.is_cuda else max(1, 2**18 // max(1, h * w))
    if n > per_chunk:
        return torch.cat([lbp_codes_batch(gray[i : i + per_chunk], P, R, dtype) for i in range(0, n, per_chunk)])
    img = gray.to(dtype)
    m = int(math.ceil(R)) + 1  # zero margin: out-of-image samples read 0, as skimage's mode 'C'
    padded = F.pad(img, (m, m, m, m))
    rows = torch.arange(h, dtype=dtype, device=img.device)[:, None]
    cols = torch.arange(w, dtype=dtype, device=img.device)[None, :]

    def shifted(dy: int, dx: int) -> torch.Tensor:  # image[r + dy, c + dx], zero outside
        return padded[:, m + dy : m + dy + h, m + dx : m + dx + w]

    ones = torch.zeros(n, h, w, dtype=torch.uint8, device=img.device)  # small dtypes: this is memory-bound
    changes = torch.zeros_like(ones)
    prev = None
    for dy, dx in zip(*(o.tolist() for o in _circle_offsets(P, R)), strict=True):
        r0, r1, c0, c1 = math.floor(dy), math.ceil(dy), math.floor(dx), math.ceil(dx)
        if r0 == r1 and c0 == c1:
            value = shifted(r0, c0)
        else:
            # skimage's bilinear_interpolation, same operations in the same order (so ties with
            # the centre resolve identically): the weights come from (r + dy) - floor(r + dy) per
            # row, which in floating point differ slightly from row to row.
            dr, dc = (rows + dy) - (rows + r0), (cols + dx) - (cols + c0)
            top = (1 - dc) * shifted(r0, c0) + dc * shifted(r0, c1)
            bottom = (1 - dc) * shifted(r1, c0) + dc * shifted(r1, c1)
            value = (1 - dr) * top + dr * bottom
        # skimage tests `sample - centre >= 0`; for finite floats that is exactly `sample >= centre`
        # (IEEE subtraction with gradual underflow is 0 only for equal operands), one pass cheaper.
        bit = torch.ge(value, img)
        ones += bit
        if prev is not None:
            changes += bit != prev
        prev = bit
    # skimage counts transitions between consecutive samples without the wrap-around pair; as the
    # circular count is even, "<= 2 without wrap" and "<= 2 with wrap" select the same patterns.
    return torch.where(changes <= 2, ones, torch.full_like(ones, P + 1)).to(torch.int64)


def lbp_codes(gray: np.ndarray, P: int = 8, R: float = 1.0) -> np.ndarray:
    """Uniform LBP codes of one grey image (scikit-image's `method="uniform"`, exactly).

    Args:
        gray: (H, W) uint8 or float grey image.
        P: number of circle samples.
        R: circle radius in pixels.

    Returns:
        (H, W) int64 codes in 0..P+1.

    >>> lbp_codes(np.zeros((2, 3), np.uint8)).tolist()  # every sample ties with the centre
    [[8, 8, 8], [8, 8, 8]]
    """
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"gray must be (H, W), got shape {gray.shape}")
    codes = lbp_codes_batch(torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float64))[None], P, R)
    return codes[0].numpy()


def _split_sizes(n: int, parts: int) -> list[int]:
    # np.array_split's sizes: the first n % parts cells get one extra row / column.
    if parts < 1 or parts > n:
        raise ValueError(f"cannot split {n} pixels into {parts} grid cells")
    return [n // parts + 1] * (n % parts) + [n // parts] * (parts - n % parts)


def _cell_ids(h: int, w: int, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    gy, gx = grid
    ry = np.repeat(np.arange(gy), _split_sizes(h, gy))
    rx = np.repeat(np.arange(gx), _split_sizes(w, gx))
    return torch.as_tensor(ry[:, None] * gx + rx[None, :], device=device)  # (H, W) in 0..gy*gx-1


def grid_histograms(codes: torch.Tensor, grid: tuple[int, int], P: int) -> torch.Tensor:
    """(N, rows*cols*(P+2)) float64 histograms of (N, H, W) uniform-LBP codes over a grid of cells,
    per-cell frequencies, each row L2-normalised (the batched core of `lbp_histograms`)."""
    n, h, w = codes.shape
    bins = P + 2
    cells = _cell_ids(h, w, grid, codes.device)
    flat = (cells[None] * bins + codes).reshape(n, -1)
    hist = torch.zeros(n, grid[0] * grid[1] * bins, dtype=torch.float64, device=codes.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    # Per-cell frequencies (so unequal cells weigh the same), then one L2 norm over the vector.
    cell_size = torch.bincount(cells.reshape(-1), minlength=grid[0] * grid[1]).to(torch.float64)
    hist = hist / cell_size.repeat_interleave(bins)[None]
    return F.normalize(hist, dim=1).to(torch.float32)


def _to_gray(crop: np.ndarray, resize: tuple[int, int] | None, index: int) -> np.ndarray:
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"crop {index}: expected an (H, W, 3) uint8 RGB array, got {crop.dtype} {crop.shape}")
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"crop {index}: empty crop of shape {crop.shape}")
    if resize is not None:
        # cv2 takes (width, height); INTER_AREA averages when shrinking, which keeps texture codes stable.
        crop = cv2.resize(crop, (resize[1], resize[0]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)


def lbp_histograms(
    crops: Sequence[np.ndarray],
    grid: tuple[int, int] = (2, 2),
    P: int = 8,
    R: float = 1.0,
    resize: tuple[int, int] | None = (128, 128),
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Grid uniform-LBP histograms of many RGB crops, computed in batches.

    Each crop is resized to `resize` (height, width), turned grey (ITU-R 601 luma, cv2), coded with
    uniform LBP, split into a `grid` (rows, cols) of cells (as `np.array_split` splits: the first
    cells take the remainder pixels); each cell gives a (P + 2)-bin frequency
    histogram, the cells are concatenated row-major and the whole vector is L2-normalised.

    Args:
        crops: N arrays, each (H_i, W_i, 3) uint8 RGB.
        grid: (rows, cols) of cells.
        P: number of circle samples.
        R: circle radius in pixels (of the resized crop).
        resize: (height, width) every crop is resized to; None keeps sizes (then one crop per batch).
        device: where the codes are computed.
        batch_size: crops per batch.
        progress: show a tqdm bar.

    Returns:
        (N, D) float32, D = rows * cols * (P + 2), rows L2-normalised.
    """
    d = lbp_dim(grid, P)
    if len(crops) == 0:
        return np.zeros((0, d), np.float32)
    step = batch_size if resize is not None else 1
    out = []
    for start in progress_bar(range(0, len(crops), step), enabled=progress, desc="lbp"):
        grays = [_to_gray(np.asarray(c), resize, start + j) for j, c in enumerate(crops[start : start + step])]
        batch = torch.from_numpy(np.stack(grays)).to(device)
        out.append(grid_histograms(lbp_codes_batch(batch, P, R), grid, P).cpu().numpy())
    return np.concatenate(out, axis=0)


def lbp_histogram(
    crop_rgb: np.ndarray,
    grid: tuple[int, int] = (2, 2),
    P: int = 8,
    R: float = 1.0,
    resize: tuple[int, int] | None = (128, 128),
) -> np.ndarray:
    """Grid uniform-LBP histogram of one RGB crop (see `lbp_histograms`).

    Args:
        crop_rgb: (H, W, 3) uint8 RGB.
        grid: (rows, cols) of cells.
        P: number of circle samples.
        R: circle radius in pixels.
        resize: (height, width) the crop is resized to first, or None.

    Returns:
        (D,) float32 L2-normalised, D = rows * cols * (P + 2).

    >>> h = lbp_histogram(np.zeros((8, 8, 3), np.uint8), grid=(1, 1), resize=None)
    >>> h.shape, float(h[8])  # a flat crop: every pixel has code P = 8
    ((10,), 1.0)
    """
    return lbp_histograms([crop_rgb], grid=grid, P=P, R=R, resize=resize)[0]
