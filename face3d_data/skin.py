"""Skin-probability mask: the Deep3DFaceRecon colour model, vectorised.

The model (Deep3DFaceRecon ``util/skin_mask.py``, docs/formats.md#deep3dfacerecon-skin-mask) classifies each pixel
by its
BT.601 studio-range YCbCr colour with two 3-D Gaussian mixtures of four components each, one for
skin and one for non-skin, and a fixed skin prior of 0.8:

    P(skin | c) = 0.8 L_skin(c) / (0.8 L_skin(c) + 0.2 L_nonskin(c)).

The published parameters (weights, means, inverse covariances, determinants) are reproduced below as
numbers. Differences from the reference implementation:

- the quadratic forms of all eight components are one ``(8, 10) @ (10, N)`` product over the
  monomials of the colour (no per-pixel Python loop);
- the YCbCr conversion is affine, so it is folded into the quadratic forms (monomials of RGB);
- the component densities are scaled by their largest before ``exp``, so a colour far from every
  component gets a well-defined probability instead of ``0/0 = NaN`` (where the reference's
  ``math.exp`` underflows for both mixtures it writes an undefined uint8); everywhere else the
  results agree with the reference to float32 rounding.

Input is RGB (the reference reads BGR with OpenCV and flips it; the arithmetic is the same).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SKIN_PRIOR", "skin_probability", "skin_mask", "rgb_to_ycbcr", "reference_skin_probability"]

SKIN_PRIOR = 0.8

# RGB (0-255) -> YCbCr, BT.601 studio range: ycbcr = rgb @ _RGB_TO_YCBCR.T / 255 + _YCBCR_OFFSET.
_RGB_TO_YCBCR = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])

_SKIN_WEIGHTS = np.array([0.24063933, 0.16365987, 0.26034665, 0.33535415])
_SKIN_MEANS = np.array(
    [
        [113.71862, 103.39613, 164.08226],
        [150.19858, 105.18467, 155.51428],
        [183.92976, 107.62468, 152.71820],
        [114.90524, 113.59782, 151.38217],
    ]
)
_SKIN_COV_DET = np.array([5692842.5, 5851930.5, 2329131.0, 1585971.0])
_SKIN_COV_INV = np.array(
    [
        [[0.0019472069, 0.0020450759, -0.00060243998],
         [0.0020450759, 0.017700525, 0.0051420014],
         [-0.00060243998, 0.0051420014, 0.0081308950]],
        [[0.0027110141, 0.0011036990, 0.0023122299],
         [0.0011036990, 0.010707724, 0.010742856],
         [0.0023122299, 0.010742856, 0.017481629]],
        [[0.0048026871, 0.00022935172, 0.0077668377],
         [0.00022935172, 0.011729696, 0.0081661865],
         [0.0077668377, 0.0081661865, 0.025374353]],
        [[0.0011989699, 0.0022453172, -0.0010748957],
         [0.0022453172, 0.047758564, 0.020332102],
         [-0.0010748957, 0.020332102, 0.024502251]],
    ]
)

_NONSKIN_WEIGHTS = np.array([0.12791070, 0.31130761, 0.34245777, 0.21832393])
_NONSKIN_MEANS = np.array(
    [
        [99.200851, 112.07533, 140.20602],
        [110.91392, 125.52969, 130.19237],
        [129.75864, 129.96107, 126.96808],
        [112.29587, 128.85121, 129.05431],
    ]
)
_NONSKIN_COV_DET = np.array([458703648.0, 6466488.0, 90611376.0, 133097.63])
_NONSKIN_COV_INV = np.array(
    [
        [[0.00085371657, 0.00071197288, 0.00023958916],
         [0.00071197288, 0.0025935620, 0.00076557708],
         [0.00023958916, 0.00076557708, 0.0015042332]],
        [[0.00024650150, 0.00045542428, 0.00015019422],
         [0.00045542428, 0.026412144, 0.018419769],
         [0.00015019422, 0.018419769, 0.037497383]],
        [[0.00037054974, 0.00038146760, 0.00040408765],
         [0.00038146760, 0.0085505722, 0.0079136286],
         [0.00040408765, 0.0079136286, 0.010982352]],
        [[0.00013709733, 0.00051228428, 0.00012777430],
         [0.00051228428, 0.28237113, 0.10528370],
         [0.00012777430, 0.10528370, 0.23468947]],
    ]
)


def _component_log_weights(weights, cov_det) -> np.ndarray:
    """log(w_k / ((2 pi)^(3/2) sqrt(det Sigma_k))) per component, shape (K,)."""
    return np.log(weights) - 1.5 * np.log(2.0 * np.pi) - 0.5 * np.log(cov_det)


def _quadratic_coefficients(means, cov_inv) -> np.ndarray:
    """Coefficients (10, K) such that monomials(c) @ coef = (c - mu_k)^T A_k (c - mu_k).

    The monomials of a colour c = (a, b, d) are [a², b², d², ab, ad, bd, a, b, d, 1].
    """
    a = cov_inv
    lin = -2.0 * np.einsum("kij,kj->ki", a, means)
    const = np.einsum("ki,kij,kj->k", means, a, means)
    return np.stack(
        [
            a[:, 0, 0], a[:, 1, 1], a[:, 2, 2],
            2 * a[:, 0, 1], 2 * a[:, 0, 2], 2 * a[:, 1, 2],
            lin[:, 0], lin[:, 1], lin[:, 2], const,
        ]
    )


_RGB_CENTRE = 127.5


def _build_tables():
    # The colour transform is affine, so fold it into the quadratic form: the monomials are taken
    # directly of the RGB values (0-255) and the coefficients absorb the YCbCr conversion.
    # Equivalent components in RGB space: mean_rgb = M^-1 (mu - offset), A_rgb = M^T A M.
    m = _RGB_TO_YCBCR / 255.0
    m_inv = np.linalg.inv(m)
    means = np.concatenate([_SKIN_MEANS, _NONSKIN_MEANS])
    cov_inv = np.concatenate([_SKIN_COV_INV, _NONSKIN_COV_INV])
    # Colours are centred on mid-grey before the monomials are taken (smaller float32 terms).
    means_rgb = (means - _YCBCR_OFFSET) @ m_inv.T - _RGB_CENTRE
    cov_inv_rgb = np.einsum("ji,kjl,lm->kim", m, cov_inv, m)
    coef = -0.5 * _quadratic_coefficients(means_rgb, cov_inv_rgb)
    coef[9] += np.concatenate(
        [
            _component_log_weights(_SKIN_WEIGHTS, _SKIN_COV_DET),
            _component_log_weights(_NONSKIN_WEIGHTS, _NONSKIN_COV_DET),
        ]
    )
    return coef  # (10, 8): monomials(rgb - centre) @ coef = log(w_k N(c; mu_k, Sigma_k))


_LOG_COMPONENT_COEF = _build_tables()
_LOG_PRIOR_ODDS = np.log(SKIN_PRIOR / (1.0 - SKIN_PRIOR))


def rgb_to_ycbcr(image_rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range YCbCr of an RGB image.

    Args:
        image_rgb: (..., 3) array, RGB in 0-255 (any real dtype).
    Returns:
        (..., 3) float64 (Y, Cb, Cr).
    """
    rgb = np.asarray(image_rgb, dtype=np.float64)
    return rgb @ (_RGB_TO_YCBCR.T / 255.0) + _YCBCR_OFFSET


def _check_image(image_rgb) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_rgb: expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
            raise ValueError("image_rgb: expected finite RGB values in 0-255")
    return image


def skin_probability(image_rgb: np.ndarray, chunk_pixels: int = 1 << 14) -> np.ndarray:
    """Posterior skin probability per pixel.

    Args:
        image_rgb: (H, W, 3) RGB, uint8 or real values in 0-255.
        chunk_pixels: pixels processed per block (bounds the temporary memory and keeps it in
            cache; changes values only at float32 rounding level).
    Returns:
        (H, W) float32 in [0, 1].
    """
    image = _check_image(image_rgb)
    h, w = image.shape[:2]
    n_total = h * w
    flat = image.reshape(-1, 3)
    out = np.empty(n_total, dtype=np.float32)
    coef_t = np.ascontiguousarray(_LOG_COMPONENT_COEF.T, dtype=np.float32)  # (8, 10)
    block = max(1, min(chunk_pixels, n_total))
    monomials = np.empty((10, block), dtype=np.float32)
    for start in range(0, n_total, block):
        n = min(block, n_total - start)
        c = flat[start : start + n].T.astype(np.float32)  # (3, n)
        c -= np.float32(_RGB_CENTRE)
        f = monomials[:, :n]
        np.multiply(c, c, out=f[0:3])
        np.multiply(c[0], c[1], out=f[3])
        np.multiply(c[0], c[2], out=f[4])
        np.multiply(c[1], c[2], out=f[5])
        f[6:9] = c
        f[9] = 1.0
        log_comp = coef_t @ f  # (8, n): log of the weighted component densities
        # Scale all eight by the largest so that the largest becomes exp(0) = 1: no overflow,
        # and the denominator below is at least min(prior, 1 - prior).
        top = np.maximum.reduce(log_comp, axis=0)
        log_comp -= top
        np.exp(log_comp, out=log_comp)
        skin = log_comp[0] + log_comp[1] + log_comp[2] + log_comp[3]
        skin *= np.float32(SKIN_PRIOR)
        nonskin = log_comp[4] + log_comp[5] + log_comp[6] + log_comp[7]
        nonskin *= np.float32(1.0 - SKIN_PRIOR)
        np.divide(skin, skin + nonskin, out=out[start : start + n])
    return out.reshape(h, w)


def skin_mask(image_rgb: np.ndarray) -> np.ndarray:
    """Skin attention mask as Deep3DFaceRecon stores it (one channel).

    Args:
        image_rgb: (H, W, 3) RGB, uint8 or real values in 0-255.
    Returns:
        (H, W) uint8, round(255 * P(skin)) (round half to even, as ``np.round``).
    """
    p = skin_probability(image_rgb)
    return np.round(p * np.float32(255.0)).astype(np.uint8)


def reference_skin_probability(image_rgb: np.ndarray) -> np.ndarray:
    """The model evaluated one pixel at a time, straight from its definition (slow).

    The independent reference for tests and benchmarks: per pixel, the YCbCr colour, the eight
    Gaussian densities with ``math.exp`` and the posterior, as Deep3DFaceRecon computes them.

    Args:
        image_rgb: (H, W, 3) RGB in 0-255 (keep it small: ~10 µs per pixel).
    Returns:
        (H, W) float64; NaN where every density underflows (as in the reference implementation).
    """
    image = _check_image(image_rgb)

    def mixture(c, weights, means, cov_det, cov_inv):
        total = 0.0
        for k in range(len(weights)):
            d = c - means[k]
            norm = (2 * math.pi) ** 1.5 * math.sqrt(cov_det[k])
            total += weights[k] * math.exp(-0.5 * float(d @ cov_inv[k] @ d)) / norm
        return total

    h, w = image.shape[:2]
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            r, g, b = (float(v) for v in image[y, x])
            c = np.array([16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255,
                          128 + (-37.797 * r - 74.203 * g + 112 * b) / 255,
                          128 + (112 * r - 93.786 * g - 18.214 * b) / 255])
            ls = SKIN_PRIOR * mixture(c, _SKIN_WEIGHTS, _SKIN_MEANS, _SKIN_COV_DET, _SKIN_COV_INV)
            ln = (1 - SKIN_PRIOR) * mixture(c, _NONSKIN_WEIGHTS, _NONSKIN_MEANS, _NONSKIN_COV_DET,
                                            _NONSKIN_COV_INV)
            out[y, x] = ls / (ls + ln) if ls + ln > 0 else float("nan")
    return out
