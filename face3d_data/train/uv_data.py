"""Read the ``uv-data/`` folder the posmap / uv_assets stages write (the trainer's UV assets).

Files (see ``docs/prnet.md``): ``uv_face_mask.png`` (0/255), ``uv_weight_mask.png`` (the values
are the weights), ``uv_kpt_weights.npz`` (exact keypoint decoder), ``face_ind.txt``,
``triangles.txt``. All in the UV texel frame of an R×R map.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.posmap.keypoint_weights import KeypointWeights

FILES = ("uv_face_mask.png", "uv_weight_mask.png", "uv_kpt_weights.npz", "face_ind.txt", "triangles.txt")


@dataclasses.dataclass
class UVData:
    """UV assets as arrays.

    face_mask: (R, R) bool. weight_mask: (R, R) float32 training weights (0 outside the covered UV
    area). kpt_weights: the exact 68-keypoint decoder. face_ind: (K,) int64 flat texel indices
    ``v·R + u`` of the face mask. triangles: (T, 3) int64 triangulation, indices into ``face_ind``.
    """

    face_mask: np.ndarray
    weight_mask: np.ndarray
    kpt_weights: KeypointWeights
    face_ind: np.ndarray
    triangles: np.ndarray

    @property
    def resolution(self) -> int:
        return int(self.face_mask.shape[0])

    def to_state(self) -> dict:
        """Plain arrays for a checkpoint (:meth:`from_state` restores)."""
        k = self.kpt_weights
        return {"face_mask": self.face_mask, "weight_mask": self.weight_mask, "kpt_texels": k.texels,
                "kpt_weights": k.weights, "kpt_exact": k.exact, "face_ind": self.face_ind,
                "triangles": self.triangles}

    @classmethod
    def from_state(cls, state: dict) -> UVData:
        mask = np.asarray(state["face_mask"], bool)
        return cls(mask, np.asarray(state["weight_mask"], np.float32),
                   KeypointWeights(np.asarray(state["kpt_texels"]), np.asarray(state["kpt_weights"]),
                                   np.asarray(state["kpt_exact"]), int(mask.shape[0])),
                   np.asarray(state["face_ind"], np.int64), np.asarray(state["triangles"], np.int64))


def load_uv_data(folder: str) -> UVData:
    """Read a ``uv-data`` folder.

    Raises:
        ConfigError: missing folder or file, or inconsistent resolutions.
    """
    from face3d_data.io.images import read_image

    missing = [n for n in FILES if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise ConfigError(f"uv-data folder {folder!r} lacks {', '.join(missing)} "
                          "(written by the posmap and uv_assets stages)")
    face = read_image(os.path.join(folder, "uv_face_mask.png"))[..., 0] > 127
    weight = read_image(os.path.join(folder, "uv_weight_mask.png"))[..., 0].astype(np.float32)
    with np.load(os.path.join(folder, "uv_kpt_weights.npz")) as z:
        kpt = KeypointWeights(z["texels"], z["weights"], z["exact"], int(z["resolution"]))
    face_ind = np.loadtxt(os.path.join(folder, "face_ind.txt"), dtype=np.int64, ndmin=1)
    triangles = np.loadtxt(os.path.join(folder, "triangles.txt"), dtype=np.int64, ndmin=2)
    r = face.shape[0]
    if face.shape != (r, r) or weight.shape != (r, r) or kpt.resolution != r:
        raise ConfigError(f"uv-data folder {folder!r}: inconsistent resolutions "
                          f"(masks {face.shape}, {weight.shape}; keypoints {kpt.resolution})")
    return UVData(face, weight, kpt, face_ind, triangles)
