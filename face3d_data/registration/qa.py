"""The quality record of one registration and its ``ok | failed_qa`` status.

Every figure is in mm, in the scan frame. The record holds:

- ``landmarks``: mean landmark error per iBUG group after the similarity (``rigid``) and after
  NICP (``registered``); the jaw is reported but not judged (3D jaw landmarks are unreliable);
- ``now_crop``: scan -> registered-mesh distances over the NoW crop (median, mean, std, p95);
- ``valid_fraction``: per region class (features, cheeks, rest) and overall;
- ``flipped_faces``: triangles whose normal turned over between the 3DMM fit and the result, per class;
- ``edge_stretch``: percentiles (p1, median, p99) of deformed / initial edge length on the face;
- ``status`` and the ``reasons`` it failed (:class:`Thresholds`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from face3d_data.registration.landmarks import NOW7_IBUG, group_errors
from face3d_data.registration.nicp import flipped_faces
from face3d_data.registration.now import now_crop, point_to_surface
from face3d_data.registration.regions import CLASS_NAMES
from face3d_data.registration.surface import unique_edges


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """A registration fails QA when any limit is crossed."""

    inner_landmark_mm: float = 8.0
    features_valid_min: float = 0.9
    features_flipped_max: float = 0.01
    now_median_mm: float = 1.0


def qa_record(*, template, scan_mm, scan_triangles, lm_mm, ibug, init_mm, start_mm, registered_mm, valid,
              closest: str = "auto", thresholds: Thresholds = Thresholds()) -> dict:
    """Build the QA record (see module docstring). All point arrays in scan-frame mm."""
    model = template.model
    tri = template.triangles
    classes = template.classes
    lm_v = model.landmarks[ibug]
    rec: dict = {"landmarks": {"rigid": group_errors(init_mm[lm_v], lm_mm, ibug),
                               "registered": group_errors(registered_mm[lm_v], lm_mm, ibug)}}
    # NoW crop from the scan's landmarks when it has the 7, else from the registered template's
    pos = {int(k): i for i, k in enumerate(ibug)}
    if all(int(k) in pos for k in NOW7_IBUG):
        lm7 = lm_mm[[pos[int(k)] for k in NOW7_IBUG]]
    else:
        lm7 = registered_mm[model.landmarks[NOW7_IBUG]]
    crop = now_crop(scan_mm, lm7)
    if crop.any():
        d, _, _ = point_to_surface(scan_mm[crop], registered_mm, tri, closest)
        rec["now_crop"] = {"median_mm": float(np.median(d)), "mean_mm": float(np.mean(d)),
                           "std_mm": float(np.std(d)), "p95_mm": float(np.percentile(d, 95)),
                           "n_points": int(crop.sum())}
    else:
        rec["now_crop"] = {"median_mm": float("nan"), "mean_mm": float("nan"), "std_mm": float("nan"),
                           "p95_mm": float("nan"), "n_points": 0}
    rec["valid_fraction"] = {name: float(np.mean(valid[classes == c])) if np.any(classes == c) else float("nan")
                             for c, name in enumerate(CLASS_NAMES)}
    rec["valid_fraction"]["all"] = float(np.mean(valid))
    flips = flipped_faces(start_mm, registered_mm, tri)
    tri_class = classes[tri].min(axis=1)
    rec["flipped_faces"] = {name: int(flips[tri_class == c].sum()) for c, name in enumerate(CLASS_NAMES)}
    rec["flipped_faces"]["features_fraction"] = float(np.mean(flips[tri_class == 2])) if np.any(tri_class == 2) else 0.0
    edges = unique_edges(tri)
    face_e = edges[(classes[edges[:, 0]] >= 1) & (classes[edges[:, 1]] >= 1)]
    l0 = np.linalg.norm(start_mm[face_e[:, 0]] - start_mm[face_e[:, 1]], axis=1)
    l1 = np.linalg.norm(registered_mm[face_e[:, 0]] - registered_mm[face_e[:, 1]], axis=1)
    ratio = l1 / np.maximum(l0, 1e-12)
    rec["edge_stretch"] = ({"p1": float(np.percentile(ratio, 1)), "median": float(np.median(ratio)),
                            "p99": float(np.percentile(ratio, 99))} if len(ratio) else {})
    reasons = []
    inner = rec["landmarks"]["registered"]["inner"]
    if not np.isfinite(inner) or inner > thresholds.inner_landmark_mm:
        reasons.append(f"inner landmark error {inner:.2f} mm > {thresholds.inner_landmark_mm}")
    fv = rec["valid_fraction"]["features"]
    if not np.isfinite(fv) or fv < thresholds.features_valid_min:
        reasons.append(f"valid fraction on facial features {fv:.3f} < {thresholds.features_valid_min}")
    ff = rec["flipped_faces"]["features_fraction"]
    if ff > thresholds.features_flipped_max:
        reasons.append(f"flipped faces on facial features {ff:.4f} > {thresholds.features_flipped_max}")
    med = rec["now_crop"]["median_mm"]
    if not np.isfinite(med) or med > thresholds.now_median_mm:
        reasons.append(f"NoW-crop median distance {med:.3f} mm > {thresholds.now_median_mm}")
    rec["reasons"] = reasons
    rec["status"] = "failed_qa" if reasons else "ok"
    return rec
