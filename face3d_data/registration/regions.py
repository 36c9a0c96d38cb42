"""Per-vertex region classes of a template: training weights and NICP stiffness.

Three classes, as FGNet weights its per-vertex loss (high on facial features, medium on cheeks
and forehead, low on ears, neck and the rest, where registration fails most):

- ``features`` (weight 1.0): eyes, nose, mouth;
- ``cheeks`` (weight 0.8): the rest of the face;
- ``rest`` (weight 0.1): ears, neck, scalp.

With the model's own ``regions`` codes (the embedded model has them) the classes follow them;
otherwise they are derived from distances to the template's landmarks, in units of the outer
eye-corner distance ``E``: within 0.3 E of an inner landmark (iBUG 27–67) -> features; within
1.1 E of the centroid of the inner landmarks and in front of the ears -> cheeks.
"""

from __future__ import annotations

import numpy as np

from face3d_data.morphable.model import REGIONS

CLASS_NAMES = ("rest", "cheeks", "features")
CLASS_WEIGHT = np.array([0.1, 0.8, 1.0], np.float32)
#: NICP stiffness multiplier per class (stiffer where scans rarely have data)
CLASS_STIFFNESS = np.array([3.0, 1.0, 1.0])


def region_classes(model) -> np.ndarray:
    """(N,) uint8 class per template vertex: 0 rest, 1 cheeks, 2 features (see module docstring)."""
    n = model.n_vertices
    if model.regions is not None:
        r = model.regions
        out = np.zeros(n, np.uint8)
        out[r == REGIONS["face"]] = 1
        out[np.isin(r, [REGIONS["eyes"], REGIONS["nose"], REGIONS["mouth"]])] = 2
        return out
    v = model.mean.astype(np.float64)
    lm = v[model.landmarks]
    eye = float(np.linalg.norm(lm[36] - lm[45]))
    inner = lm[27:68]
    centre = inner.mean(axis=0)
    d_feat = np.min(np.linalg.norm(v[:, None, :] - inner[None, :, :], axis=2), axis=1)
    d_c = np.linalg.norm(v - centre, axis=1)
    # "in front of the ears": in the frontal direction (+z in model space) of the ear line
    ear_z = 0.5 * (lm[0, 2] + lm[16, 2])
    out = np.zeros(n, np.uint8)
    out[(d_c < 1.1 * eye) & (v[:, 2] > ear_z)] = 1
    out[d_feat < 0.3 * eye] = 2
    return out


def vertex_weights(classes: np.ndarray) -> np.ndarray:
    """(N,) float32 training weight of each vertex from its class."""
    return CLASS_WEIGHT[np.asarray(classes)]


def vertex_stiffness(classes: np.ndarray) -> np.ndarray:
    """(N,) float64 NICP stiffness multiplier of each vertex from its class."""
    return CLASS_STIFFNESS[np.asarray(classes)]
