"""Scan landmarks: iBUG orders, unit detection, order checks, similarity alignment.

Scan landmarks are 3D *points* in the scan's own frame and unit (never vertex indices, which
change when a loader drops or splits vertices). Each point is tied to an iBUG-68 index:

- ``ibug68``: 68 points in iBUG order (jaw 0–16, brows 17–26, nose 27–35, eyes 36–47, mouth 48–67).
- ``ibug51``: the 51 inner points, iBUG 17–67 in order.
- ``now7``: the 7 NoW points (outer/inner eye corners, nose bottom, mouth corners; :data:`NOW7_IBUG`).
- a mapping file: one iBUG index per landmark row (whitespace-separated integers, or a JSON
  list / ``{"ibug": [...]}``); ``-1`` ignores that row.
"""

from __future__ import annotations

import json
import os

import numpy as np

from face3d_data.errors import ConfigError

#: iBUG-68 groups used for alignment and QA.
GROUPS = {"jaw": range(17), "brows": range(17, 27), "nose": range(27, 36),
          "eyes": range(36, 48), "mouth": range(48, 68)}

#: iBUG index of each landmark after a left-right mirror of the face.
MIRROR_68 = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
                     + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                     + [54, 53, 52, 51, 50, 49, 48] + [59, 58, 57, 56, 55] + [64, 63, 62, 61, 60]
                     + [67, 66, 65])

#: the 7 NoW landmarks as iBUG indices: outer eye corners 0/3, inner 1/2, nose bottom 4, mouth corners 5/6
NOW7_IBUG = np.array([36, 39, 42, 45, 33, 48, 54])

#: metres per unit, written as "mm per unit"
UNIT_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0, "um": 1e-3}

#: expected outer-eye-corner distance (mm) and the accepted range after unit conversion
EYE_DISTANCE_MM = 95.0
EYE_DISTANCE_RANGE_MM = (40.0, 200.0)


def ibug_indices(landmark_format: str, count: int) -> np.ndarray:
    """(count,) int64 iBUG index of each landmark row (-1 = unused) for a ``--landmark-format``.

    ``auto`` accepts 68 (``ibug68``) or 51 (``ibug51``) points.

    Raises:
        ConfigError: unknown format or unreadable mapping file; ValueError: count mismatch.
    """
    fmt = str(landmark_format)
    if fmt == "auto":
        if count == 68:
            fmt = "ibug68"
        elif count == 51:
            fmt = "ibug51"
        else:
            raise ValueError(f"{count} landmarks: auto detects 68 (ibug68) or 51 (ibug51); give a mapping file")
    if fmt == "ibug68":
        if count != 68:
            raise ValueError(f"ibug68: expected 68 landmarks, got {count}")
        return np.arange(68)
    if fmt == "ibug51":
        if count != 51:
            raise ValueError(f"ibug51: expected 51 landmarks, got {count}")
        return np.arange(17, 68)
    if fmt == "now7":
        if count != 7:
            raise ValueError(f"now7: expected 7 landmarks, got {count}")
        return NOW7_IBUG.copy()
    idx = read_mapping(fmt)
    if len(idx) != count:
        raise ValueError(f"mapping {fmt}: {len(idx)} entries for {count} landmarks")
    return idx


def read_mapping(path: str) -> np.ndarray:
    """Read a landmark mapping file (see module docstring) -> (K,) int64 iBUG indices or -1."""
    if not os.path.isfile(path):
        raise ConfigError(f"landmark_format: expected auto, ibug68, ibug51, now7 or a mapping file; "
                          f"{path!r} is none")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.lower().endswith(".json"):
            data = json.loads(text)
            if isinstance(data, dict):
                data = data.get("ibug")
            idx = np.asarray(data, np.int64).ravel()
        else:
            idx = np.asarray([int(tok) for tok in text.split()], np.int64)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"landmark mapping {path}: {exc}") from None
    if idx.size == 0 or idx.max() > 67 or idx.min() < -1:
        raise ConfigError(f"landmark mapping {path}: expected iBUG indices 0..67 or -1")
    used = idx[idx >= 0]
    if len(np.unique(used)) != len(used):
        raise ConfigError(f"landmark mapping {path}: an iBUG index appears twice")
    return idx


def similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None,
               scale: bool = True):
    """Least-squares ``s, R, t`` with ``target ≈ s R source + t`` (Umeyama; proper rotation, no reflection).

    Args:
        source, target: (K, 3) corresponding points; weights: optional (K,) >= 0.
    Returns:
        (s float, R (3, 3), t (3,)), float64.
    """
    p = np.asarray(source, np.float64)
    q = np.asarray(target, np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, np.float64)
    w = w / max(w.sum(), 1e-300)
    mp, mq = w @ p, w @ q
    pc, qc = p - mp, q - mq
    cov = (qc * w[:, None]).T @ pc
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u @ vt) < 0:
        sign[2] = -1.0
    R = (u * sign) @ vt
    var = float(np.sum(w * np.sum(pc * pc, axis=1)))
    s = float(np.sum(d * sign) / var) if scale and var > 0 else 1.0
    t = mq - s * R @ mp
    return s, R, t


def apply_similarity(points: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``s R p + t`` for (N, 3) points (float64)."""
    return s * np.asarray(points, np.float64) @ np.asarray(R).T + np.asarray(t)


def invert_similarity(points: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``Rᵀ (p − t) / s`` for (N, 3) points."""
    return (np.asarray(points, np.float64) - np.asarray(t)) @ np.asarray(R) / s


def detect_unit(points_by_ibug: dict, reference_mm: np.ndarray | None = None,
                reference_ibug: np.ndarray | None = None) -> tuple[str, float]:
    """Guess the scan unit from its landmarks.

    Uses the outer-eye-corner distance (iBUG 36–45, ~95 mm) when both are present; otherwise the
    RMS spread of the landmarks about their centroid against the same landmarks of
    ``reference_mm`` (the template, in mm).

    Args:
        points_by_ibug: {ibug index: (3,) point}.
    Returns:
        (unit name, measured eye distance or spread ratio in mm after conversion).
    Raises:
        ValueError: no unit puts the face in a plausible size range.
    """
    if 36 in points_by_ibug and 45 in points_by_ibug:
        raw = float(np.linalg.norm(np.asarray(points_by_ibug[36]) - np.asarray(points_by_ibug[45])))
        expected = EYE_DISTANCE_MM
    elif reference_mm is not None and reference_ibug is not None:
        keys = [k for k in points_by_ibug if k in set(np.asarray(reference_ibug).tolist())]
        if len(keys) < 3:
            raise ValueError("unit detection: fewer than 3 landmarks shared with the template")
        p = np.array([points_by_ibug[k] for k in keys], np.float64)
        pos = {int(k): i for i, k in enumerate(reference_ibug)}
        r = np.asarray(reference_mm, np.float64)[[pos[k] for k in keys]]
        raw = float(np.sqrt(np.mean(np.sum((p - p.mean(0)) ** 2, 1))))
        expected = float(np.sqrt(np.mean(np.sum((r - r.mean(0)) ** 2, 1))))
    else:
        raise ValueError("unit detection: needs both outer eye corners (iBUG 36, 45) or a template")
    if raw <= 0:
        raise ValueError("unit detection: landmarks coincide")
    best = min(UNIT_MM, key=lambda u: abs(np.log(raw * UNIT_MM[u] / expected)))
    value = raw * UNIT_MM[best] * (EYE_DISTANCE_MM / expected)
    lo, hi = EYE_DISTANCE_RANGE_MM
    if not lo <= value <= hi:
        raise ValueError(f"unit detection: the face measures {value:.1f} mm in the nearest unit ({best})")
    return best, value


def landmark_order(scan_points: np.ndarray, template_points: np.ndarray, ibug: np.ndarray) -> dict:
    """Check the landmark order against the template by similarity residuals.

    Fits the given order and its left-right mirror (:data:`MIRROR_68`); reports which explains
    the points better and how well (RMS residual / RMS spread, ~0.05 for a good match).

    Args:
        scan_points: (K, 3); template_points: (K, 3) template points of the same iBUG indices ``ibug``.
    Returns:
        ``{"order": "ibug" | "mirrored" | "unknown", "residual": r, "mirrored_residual": r_m}``.
    """
    p = np.asarray(scan_points, np.float64)
    q = np.asarray(template_points, np.float64)
    ibug = np.asarray(ibug)

    def rel_residual(src, dst):
        s, R, t = similarity(src, dst)
        res = apply_similarity(src, s, R, t) - dst
        spread = np.sqrt(np.mean(np.sum((dst - dst.mean(0)) ** 2, 1)))
        return float(np.sqrt(np.mean(np.sum(res ** 2, 1))) / max(spread, 1e-300))

    direct = rel_residual(q, p)
    pos = {int(k): i for i, k in enumerate(ibug)}
    mirrored_idx = [pos.get(int(MIRROR_68[k]), -1) for k in ibug]
    mirrored = np.inf
    if min(mirrored_idx) >= 0:
        mirrored = rel_residual(q, p[mirrored_idx])
    if direct < 0.15 and direct <= mirrored:
        order = "ibug"
    elif mirrored < 0.15:
        order = "mirrored"
    else:
        order = "unknown"
    return {"order": order, "residual": direct, "mirrored_residual": mirrored}


def group_errors(predicted: np.ndarray, target: np.ndarray, ibug: np.ndarray) -> dict:
    """Mean landmark distance per iBUG group (and ``inner`` = all but the jaw), NaN for empty groups."""
    d = np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(target, np.float64), axis=1)
    ibug = np.asarray(ibug)
    out = {}
    for name, rng in GROUPS.items():
        m = np.isin(ibug, list(rng))
        out[name] = float(d[m].mean()) if m.any() else float("nan")
    m = ibug >= 17
    out["inner"] = float(d[m].mean()) if m.any() else float("nan")
    return out
