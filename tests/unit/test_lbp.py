"""Uniform LBP: codes against scikit-image (the oracle), histograms against a per-cell numpy oracle."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from skimage.feature import local_binary_pattern

from imagesearch.features.lbp import lbp_codes, lbp_codes_batch, lbp_dim, lbp_histogram, lbp_histograms

PR = [(8, 1.0), (8, 2.0), (16, 2.0), (4, 1.0), (8, 1.5), (12, 3.0)]


def _skimage_codes(gray: np.ndarray, P: int, R: float) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns on float input; we test float on purpose
        return local_binary_pattern(gray, P, R, method="uniform").astype(np.int64)


def _realish(h: int = 40, w: int = 33) -> np.ndarray:
    """Smooth gradient, a flat rectangle (ties everywhere), a checkerboard and a blurred disc."""
    y, x = np.mgrid[0:h, 0:w]
    img = (x * 5 + y * 3).astype(np.float64)
    img[5:15, 4:20] = 120.0
    img[20:30, 10:25] = np.where((y[20:30, 10:25] + x[20:30, 10:25]) % 2 == 0, 30.0, 220.0)
    img += 60.0 * np.exp(-((y - 30) ** 2 + (x - 8) ** 2) / 20.0)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("P", "R"), PR)
def test_codes_equal_skimage_on_random_images(P: int, R: float) -> None:
    rng = np.random.default_rng(P * 10 + int(R * 10))
    images = [
        rng.integers(0, 256, (23, 31)).astype(np.uint8),
        (rng.integers(0, 4, (19, 17)) * 64).astype(np.uint8),  # four levels: many exact ties
        np.maximum(rng.random((16, 21)), 0.5),  # float input with a flat half
    ]
    for img in images:
        np.testing.assert_array_equal(lbp_codes(img, P, R), _skimage_codes(img, P, R))


@pytest.mark.parametrize(("P", "R"), PR)
def test_codes_equal_skimage_on_realish_image(P: int, R: float) -> None:
    img = _realish()
    np.testing.assert_array_equal(lbp_codes(img, P, R), _skimage_codes(img, P, R))


def test_codes_equal_skimage_on_real_product_crop(tianchi_sample) -> None:
    ann = json.loads((tianchi_sample / "image_annotation" / "000044" / "1.json").read_text(encoding="utf-8"))
    x1, y1, x2, y2 = (int(v) for v in ann["annotations"][0]["box"])
    gray = cv2.imread(str(tianchi_sample / "image" / "000044" / "1.jpg"), cv2.IMREAD_GRAYSCALE)
    crop = cv2.resize(gray[y1:y2, x1:x2], (96, 96), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(lbp_codes(crop, 8, 1), _skimage_codes(crop, 8, 1))


def test_codes_hand_worked_3x3() -> None:
    # Centre 5, east neighbour 9, the rest 1. Only sample 0 (east, 9) is >= 5: the diagonals NE and SE
    # interpolate to 0.29289 * (5 + 0.70711 * 4) + 0.70711 * 1 = 3.0 < 5. One set bit -> uniform, code 1.
    img = np.array([[1, 1, 1], [1, 5, 9], [1, 1, 1]], np.uint8)
    codes = lbp_codes(img, 8, 1)
    assert codes[1, 1] == 1
    np.testing.assert_array_equal(codes, _skimage_codes(img, 8, 1))


def test_batch_matches_single_and_chunks() -> None:
    rng = np.random.default_rng(3)
    # 300 x 300 pixels: the CPU path splits a batch into chunks of 2 images; 3 images cross a chunk.
    stack = rng.integers(0, 256, (3, 300, 300)).astype(np.uint8)
    batch = lbp_codes_batch(torch.from_numpy(stack), 8, 1.0).numpy()
    assert batch.shape == (3, 300, 300) and batch.dtype == np.int64
    for i in range(3):
        np.testing.assert_array_equal(batch[i], lbp_codes(stack[i], 8, 1))


def test_constant_crop_histogram_by_hand() -> None:
    # A flat crop: every sample ties with its centre (out-of-image samples are 0 too), so every
    # pixel has code P = 8; each of the 4 cells is one-hot at bin 8, and the L2 norm makes 4 x 0.5.
    hist = lbp_histogram(np.zeros((20, 20, 3), np.uint8), grid=(2, 2), resize=None)
    expected = np.zeros(40, np.float32)
    expected[[8, 18, 28, 38]] = 0.5
    np.testing.assert_allclose(hist, expected, atol=1e-7)


def test_histogram_matches_numpy_oracle_on_uneven_grid() -> None:
    rng = np.random.default_rng(5)
    crop = rng.integers(0, 256, (13, 17, 3)).astype(np.uint8)
    grid, P = (2, 3), 8
    hist = lbp_histogram(crop, grid=grid, P=P, R=1, resize=None)

    codes = _skimage_codes(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), P, 1)
    cells = [c for band in np.array_split(codes, grid[0], axis=0) for c in np.array_split(band, grid[1], axis=1)]
    expected = np.concatenate([np.bincount(c.ravel(), minlength=P + 2) / c.size for c in cells])
    expected /= np.linalg.norm(expected)
    assert hist.shape == (lbp_dim(grid, P),) == (60,)
    assert hist.dtype == np.float32
    np.testing.assert_allclose(hist, expected, rtol=1e-6, atol=1e-7)


def test_batched_histograms_equal_single_and_sizes() -> None:
    rng = np.random.default_rng(7)
    crops = [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for h, w in [(50, 30), (64, 64), (20, 90)]]
    batch = lbp_histograms(crops, grid=(4, 4), resize=(32, 32), batch_size=2)
    assert batch.shape == (3, 160) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-6)
    for i, crop in enumerate(crops):
        np.testing.assert_allclose(batch[i], lbp_histogram(crop, grid=(4, 4), resize=(32, 32)), rtol=1e-6)
    assert lbp_histograms([], grid=(4, 4)).shape == (0, 160)


def test_bad_crop_names_its_index() -> None:
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="crop 1"):
        lbp_histograms([good, np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        lbp_codes_batch(torch.zeros(8, 8))
