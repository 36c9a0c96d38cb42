"""R-Net training samples from the three lists ``data_preparation`` writes, with Deep3D's augmentation.

Input layout (docs/data_preparation.md): ``<data_root>/datalist/<mode>/{images,landmarks,masks}.txt``,
three parallel lists of paths relative to ``data_root``; landmarks are 68 ``x y`` rows in the
canonical frame (0-based, y down; ``landmarks_y_up`` reads ``--deep3d-compat`` files); masks are
the skin probability, uint8, channel 0 used.

Per sample (all in the canonical frame):

1. the 5 points derived from the 68 landmarks align the image to the ``S x S`` crop
   (:func:`face3d_data.landmarks.align_transform`, Deep3DFaceRecon's ``align_img``: rescale
   factor 102 at 224, scaled with S) against the 5-point template of the loaded model, with the
   template origin at the canonical crop centre ((S - 1) / 2, the camera's optical axis);
2. training only: Deep3DFaceRecon's augmentation about the crop centre — shift by a random integer
   in ±10 px (at 224, scaled with S) per axis, scale 1 + 0.1·U(-1, 1), rotation 10°·U(-1, 1) and
   a horizontal mirror with probability 0.5, which also re-orders the landmarks with the 68-point
   mirror permutation :data:`MIRROR_68`;
3. alignment and augmentation are one affine warp: the image is resampled bicubically, the mask
   bilinearly (Deep3DFaceRecon meant bilinear but its code resamples masks bicubically).

Tensors: ``image`` (3, S, S) float32 RGB in [0, 1] (no mean/std normalisation, as Deep3D),
``mask`` (1, S, S) float32 in [0, 1], ``landmarks`` (68, 2) float32 canonical crop frame.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import torch

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_datalist, read_image, read_landmarks
from face3d_data.landmarks import align_transform, five_from_68
from face3d_data.train.task import SampleDataset

__all__ = ["MIRROR_68", "RNetDataset", "augmentation_matrix", "list_paths"]


def _mirror_68() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]                       # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                 # brows
    pairs += [(31, 35), (32, 34)]                                 # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]   # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]   # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]                       # inner lips
    perm = np.arange(68)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: After a horizontal mirror, landmark k of the mirrored face is landmark MIRROR_68[k] of the original
#: (iBUG 68 order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67).
MIRROR_68 = _mirror_68()


def list_paths(data_root: str, mode: str) -> dict[str, str]:
    """The three list files of ``mode`` under ``data_root``."""
    base = os.path.join(data_root, "datalist", mode)
    return {k: os.path.join(base, f"{k}.txt") for k in ("images", "landmarks", "masks")}


def augmentation_matrix(rng: np.random.Generator, size: int, shift_px: float = 10.0, scale_delta: float = 0.1,
                        rotation_deg: float = 10.0, flip_prob: float = 0.5) -> tuple[np.ndarray, bool]:
    """A random (3, 3) affine of the canonical ``size x size`` crop about its centre, and whether it mirrors.

    ``shift_px`` is in pixels of a 224 crop (scaled with ``size``); the shift is a random integer
    there, as in Deep3DFaceRecon.
    """
    s = size / 224.0
    shift = rng.integers(-int(shift_px), int(shift_px) + 1, size=2).astype(np.float64) * s
    scale = 1.0 + scale_delta * rng.uniform(-1.0, 1.0)
    theta = math.radians(rotation_deg) * rng.uniform(-1.0, 1.0)
    flip = bool(rng.uniform() < flip_prob)
    c = (size - 1) / 2.0
    centre = np.array([[1, 0, c], [0, 1, c], [0, 0, 1.0]])
    uncentre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    cos, sin = math.cos(theta), math.sin(theta)
    lin = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]]) * np.array([[scale], [scale], [1.0]])
    mirror = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    move = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]])
    return move @ centre @ lin @ mirror @ uncentre, flip


class RNetDataset(SampleDataset):
    """Aligned (and, for training, augmented) R-Net samples (module docs).

    Args:
        data_root: the ``--data_root`` of ``data_preparation``.
        mode: ``train`` / ``val`` (the ``datalist/<mode>`` folder), or a path to a ``masks.txt``
            / list folder for ``eval rnet --datalist``.
        template_3d5: (5, 3) 5-point template in decimetres (:func:`~face3d_data.landmarks.standard_landmarks_3d5`).
        size: crop side S.
        augment, seed: see :class:`~face3d_data.train.task.SampleDataset`.
        aug: dict with ``shift_px``, ``scale_delta``, ``rotation_deg``, ``flip_prob``.
        landmarks_y_up: the landmark files are Deep3D's y-up frame (``--deep3d-compat``).
    """

    per_sample_fields = ("images", "landmark_files", "masks")

    def __init__(self, data_root: str, mode: str, template_3d5: np.ndarray, size: int = 224, *,
                 augment: bool = False, seed: int = 0, aug: dict | None = None, landmarks_y_up: bool = False,
                 limit: int = 0):
        super().__init__(seed=seed, augment=augment)
        self.data_root = data_root
        self.files = self.resolve_lists(data_root, mode)
        rows = {k: [r[0] for r in read_datalist(p, data_root, columns=1)] for k, p in self.files.items()}
        if not (len(rows["images"]) == len(rows["landmarks"]) == len(rows["masks"])):
            raise ConfigError(f"{os.path.dirname(self.files['images'])}: images/landmarks/masks lists differ in "
                              f"length ({len(rows['images'])}/{len(rows['landmarks'])}/{len(rows['masks'])})")
        self.images, self.landmark_files, self.masks = rows["images"], rows["landmarks"], rows["masks"]
        if limit:
            self.images, self.landmark_files, self.masks = (x[:limit] for x in
                                                            (self.images, self.landmark_files, self.masks))
        self.keys = [os.path.splitext(os.path.relpath(p, data_root))[0].replace(os.sep, "/") for p in self.images]
        self.template = np.asarray(template_3d5, np.float64)
        self.size = int(size)
        self.aug = {"shift_px": 10.0, "scale_delta": 0.1, "rotation_deg": 10.0, "flip_prob": 0.5, **(aug or {})}
        self.landmarks_y_up = bool(landmarks_y_up)

    @staticmethod
    def resolve_lists(data_root: str, mode: str) -> dict[str, str]:
        """List files for a mode name, a list folder, or any one of the three list files."""
        if os.path.isfile(mode):
            folder = os.path.dirname(mode)
        elif os.path.isdir(mode):
            folder = mode
        else:
            return list_paths(data_root, mode)
        return {k: os.path.join(folder, f"{k}.txt") for k in ("images", "landmarks", "masks")}

    def _landmarks(self, index: int, height: int) -> np.ndarray:
        path = self.landmark_files[index]
        lm = read_landmarks(path, 68).astype(np.float64)
        if not np.isfinite(lm).all():
            raise InputError(path, "landmarks contain NaN/inf")
        if self.landmarks_y_up:
            lm[:, 1] = height - 1 - lm[:, 1]
        return lm

    def check(self, index: int, full: bool = True) -> None:
        for p in (self.images[index], self.landmark_files[index], self.masks[index]):
            if not os.path.isfile(p):
                raise InputError(p, "file not found")
        if full:
            image = read_image(self.images[index])
            mask = read_image(self.masks[index])
            if mask.shape[:2] != image.shape[:2]:
                raise InputError(self.masks[index], f"mask is {mask.shape[1]}x{mask.shape[0]}, image is "
                                                    f"{image.shape[1]}x{image.shape[0]}")
            self._landmarks(index, image.shape[0])
        else:
            read_landmarks(self.landmark_files[index], 68)

    def load(self, index: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        image = read_image(self.images[index])
        mask = read_image(self.masks[index])[..., 0]
        if mask.shape != image.shape[:2]:
            raise InputError(self.masks[index], "mask and image sizes differ")
        lm = self._landmarks(index, image.shape[0])
        s = self.size
        align = align_transform(five_from_68(lm), image.shape[:2], self.template, target_size=s,
                                rescale_factor=102.0 * s / 224.0)
        # align_transform puts the template origin at size / 2; the camera's optical axis is at the
        # canonical centre (size - 1) / 2 (renderer half-pixel convention), so shift by -0.5
        matrix = np.vstack([align.matrix, [0, 0, 1.0]])
        matrix[:2, 2] -= 0.5
        flip = False
        if rng is not None:
            aug, flip = augmentation_matrix(rng, s, **self.aug)
            matrix = aug @ matrix
        warp = matrix[:2]
        image = cv2.warpAffine(image, warp, (s, s), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
        mask = cv2.warpAffine(mask, warp, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        lm = lm @ warp[:, :2].T + warp[:, 2]
        if flip:
            lm = lm[MIRROR_68]
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0,
                "mask": torch.from_numpy(mask).float()[None] / 255.0,
                "landmarks": torch.from_numpy(lm.astype(np.float32))}
