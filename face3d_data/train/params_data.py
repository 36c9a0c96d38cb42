"""Parameter-regression samples: 300W-LP-format pairs cropped around the face, labels moved with the crop.

Label vector (per sample, float64): ``[pitch, yaw, roll, tx, ty, tz, f, shape (Ks), exp (Ke)]`` —
300W-LP's ``Pose_Para`` + ``Shape_Para`` + ``Exp_Para`` (the 235-d layout of the Richardson CVPR'17
re-implementation for the BFM with 199 + 29 modes; 7 + 40 + 13 = 60 for the embedded model), with
the pose re-expressed for the crop: the crop is the similarity ``q = a·p + b`` of canonical points
(a square box around the 68 landmarks regenerated from the parameters, ``crop_scale`` × its side),
so ``f' = a·f``, ``t'`` follows from the Matlab frame (1-based, y up) of a crop of side S, and
``tz' = a·tz`` (projected depth scales with the image). Hence
``project(vertices, pose', (S, S)) == a·project(vertices, pose, (H, W)) + (b, 0)`` (tested).

Training augmentation jitters the box (shift and size) with the sample's generator; the label moves
with it. Image tensor: (3, S, S) RGB, ``(x - 127.5) / 128`` (3DDFA's normalisation; 3DDFA feeds BGR).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_datalist, read_image
from face3d_data.train.task import SampleDataset
from face3d_data.w300lp import (
    find_samples,
    landmarks_from_params,
    read_labels,
    roi_of_points,
)

__all__ = ["POSE_NAMES", "ParamsDataset", "crop_matrix", "crop_pose", "label_vector_of"]

POSE_NAMES = ("pitch", "yaw", "roll", "tx", "ty", "tz", "f")


def crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) canonical-frame similarity mapping the square ``box`` [x1, y1, x2, y2] onto a ``size`` crop.

    The box's edges map to the crop's outer pixel edges (pixel centres at integers on both sides).
    """
    x1, y1, x2, _ = (float(v) for v in box)
    a = size / max(x2 - x1, 1e-9)
    return np.array([[a, 0.0, (a - 1) / 2 - a * x1], [0.0, a, (a - 1) / 2 - a * y1]])


def crop_pose(pose_para: np.ndarray, matrix: np.ndarray, image_hw, size: int) -> np.ndarray:
    """``Pose_Para`` of an image -> that of its crop by ``matrix`` (a uniform scale + shift)."""
    p = np.asarray(pose_para, np.float64).copy()
    a, bx, by = matrix[0, 0], matrix[0, 2], matrix[1, 2]
    h = float(image_hw[0])
    p[3] = a * (p[3] - 1) + bx + 1
    p[4] = a * p[4] + size - a * h - by
    p[5] = a * p[5]
    p[6] = a * p[6]
    return p


def label_vector_of(labels, n_shape: int, n_exp: int, path: str) -> np.ndarray:
    """(7 + n_shape + n_exp,) float64 from a :class:`~face3d_data.w300lp.Labels` (InputError if too few modes)."""
    if labels.shape_para.size < n_shape or labels.exp_para.size < n_exp:
        raise InputError(path, f"has {labels.shape_para.size} shape / {labels.exp_para.size} expression "
                               f"coefficients, the task uses {n_shape} / {n_exp}")
    return np.concatenate([labels.pose_para, labels.shape_para[:n_shape], labels.exp_para[:n_exp]])


class ParamsDataset(SampleDataset):
    """300W-LP-format samples as (cropped image, label vector in the crop) pairs (module docs).

    Args:
        data_root: a 300W-LP folder (or synth_300wlp / fit_3dmm / rotate_300wlp output).
        pairs: list of (image path, mat path); see :meth:`pairs_from`.
        landmark_model: the model's 68-landmark subset (``model.subset(model.landmarks)``) to
            regenerate landmarks for the crop box.
        n_shape, n_exp: coefficients kept per sample.
        size: crop side S; crop_scale: box side / landmark box side.
        jitter_shift, jitter_scale: training box jitter (fraction of the side, uniform ±).
    """

    per_sample_fields = ("pairs",)

    def __init__(self, data_root: str, pairs, landmark_model, n_shape: int, n_exp: int, size: int = 120,
                 crop_scale: float = 1.4, *, augment: bool = False, seed: int = 0, jitter_shift: float = 0.05,
                 jitter_scale: float = 0.05):
        super().__init__(seed=seed, augment=augment)
        self.data_root = data_root
        self.pairs = list(pairs)
        self.keys = [os.path.splitext(os.path.relpath(p[0], data_root))[0].replace(os.sep, "/") for p in self.pairs]
        self.model = landmark_model
        self.n_shape, self.n_exp = int(n_shape), int(n_exp)
        self.size, self.crop_scale = int(size), float(crop_scale)
        self.jitter_shift, self.jitter_scale = float(jitter_shift), float(jitter_scale)

    @staticmethod
    def pairs_from(data_root: str, list_name: str) -> list[tuple[str, str]]:
        """``image mat`` rows of ``list_name`` (relative to ``data_root``, or absolute); ``"*"`` = every
        sample found under ``data_root``."""
        if list_name == "*":
            return [(s.image_path, s.mat_path) for s in find_samples(data_root)]
        path = list_name if os.path.isabs(list_name) else os.path.join(data_root, list_name)
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: list not found")
        return [tuple(r) for r in read_datalist(path, data_root, columns=2)]

    def _labels(self, index: int):
        mat = self.pairs[index][1]
        labels = read_labels(mat)
        return labels, label_vector_of(labels, self.n_shape, self.n_exp, mat)

    def target(self, index: int, image_hw, rng=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label vector in the crop (P,), crop matrix (2, 3), GT landmarks in the crop (68, 2))."""
        labels, vec = self._labels(index)
        lm = landmarks_from_params(self.model, labels, image_hw, path=self.pairs[index][1])
        box = roi_of_points(lm[:, :2], self.crop_scale)
        if rng is not None:
            side = box[2] - box[0]
            centre = (box[:2] + box[2:]) / 2 + rng.uniform(-1, 1, 2) * self.jitter_shift * side
            side *= 1 + rng.uniform(-1, 1) * self.jitter_scale
            box = np.concatenate([centre - side / 2, centre + side / 2])
        m = crop_matrix(box, self.size)
        vec = vec.copy()
        vec[:7] = crop_pose(vec[:7], m, image_hw, self.size)
        return vec, m, lm[:, :2] @ m[:, :2].T + m[:, 2]

    def check(self, index: int, full: bool = True) -> None:
        img, mat = self.pairs[index]
        for p in (img, mat):
            if not os.path.isfile(p):
                raise InputError(p, "file not found")
        _labels, vec = self._labels(index)
        if not np.isfinite(vec).all():
            raise InputError(mat, "label vector has NaN/inf")
        if full:
            read_image(img)

    def label_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the un-jittered crop label vectors over the dataset (std 0 -> 1)."""
        vecs = []
        for i in range(len(self)):
            hw = read_image_size(self.pairs[i][0])
            vecs.append(self.target(i, hw)[0])
        v = np.stack(vecs)
        std = v.std(0)
        return v.mean(0), np.where(std > 1e-12 * np.maximum(np.abs(v.mean(0)), 1), std, 1.0)

    def load(self, index: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        image = read_image(self.pairs[index][0])
        vec, m, lm = self.target(index, image.shape[:2], rng)
        crop = cv2.warpAffine(image, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = (torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float() - 127.5) / 128.0
        return {"image": x, "params": torch.from_numpy(vec), "landmarks": torch.from_numpy(lm.astype(np.float32)),
                "yaw": torch.tensor(float(vec[1]))}


def read_image_size(path: str) -> tuple[int, int]:
    """(H, W) of an image without keeping it (decodes the header only when PIL is there)."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # noqa: BLE001  (fall back to a full decode, which raises the library's InputError)
        return read_image(path).shape[:2]
