"""The PRNet dataset: crops and position maps listed in ``posmap_<split>.txt``.

Each line ``image label`` holds paths relative to the posmap output folder (the parent of the
``datalist/`` folder), read with :func:`face3d_data.io.read_datalist`. A sample is
``{"image": (3, R, R) float32 RGB in [0, 1], "posmap": (3, R, R) float32 crop pixels,
"yaw": () float32 degrees (NaN when unknown)}``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from face3d_data.errors import InputError
from face3d_data.io.datalist import read_datalist
from face3d_data.train.augment import AugmentConfig, augment_pair
from face3d_data.train.task import SampleDataset


def datalist_root(datalist: str) -> str:
    """The folder a posmap datalist's paths are relative to: the parent of its ``datalist/`` folder."""
    return os.path.dirname(os.path.dirname(os.path.abspath(datalist)))


def sample_key(image_path: str, root: str) -> str:
    """``<relative path of the image, forward slashes, no extension>``: the stage's item key."""
    rel = os.path.relpath(os.path.abspath(image_path), os.path.abspath(root)).replace(os.sep, "/")
    return os.path.splitext(rel)[0]


def read_yaw(yaw_root: str, key: str) -> float:
    """Yaw in degrees of a 300W-LP-format sample ``<yaw_root>/<key>.mat`` (``Pose_Para[1]``, radians)."""
    from face3d_data.io.mat import read_mat

    fields = read_mat(os.path.join(yaw_root, key + ".mat"), required={"Pose_Para": (7,)})
    return float(np.degrees(np.asarray(fields["Pose_Para"], np.float64).ravel()[1]))


class PosmapDataset(SampleDataset):
    """PRNet pairs of one datalist.

    Args:
        datalist: ``posmap_<split>.txt``. root: the folder its paths are relative to (default
            :func:`datalist_root`). resolution: R expected of crops and labels.
        augment: apply :func:`augment_pair` with ``aug`` (training). limit: first N lines (0 = all).
        yaw_root: optional 300W-LP-format folder holding ``<key>.mat`` labels (evaluation by yaw).
    """

    per_sample_fields = ("images", "labels", "yaws")

    def __init__(self, datalist: str, resolution: int, root: str | None = None, seed: int = 0,
                 augment: bool = False, aug: AugmentConfig | None = None, limit: int = 0,
                 yaw_root: str | None = None):
        super().__init__(seed, augment)
        self.root = root or datalist_root(datalist)
        rows = read_datalist(datalist, self.root, columns=2)
        if limit:
            rows = rows[:limit]
        self.images = [r[0] for r in rows]
        self.labels = [r[1] for r in rows]
        self.keys = [sample_key(p, self.root) for p in self.images]
        self.resolution = int(resolution)
        self.aug = aug or AugmentConfig()
        self.yaws = [float("nan")] * len(self.keys)
        self.yaw_root = yaw_root
        if yaw_root:
            self.yaws = [self._yaw(k) for k in self.keys]

    def _yaw(self, key: str) -> float:
        try:
            return read_yaw(self.yaw_root, key)
        except (InputError, OSError):
            return float("nan")

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(crop (R, R, 3) uint8, label (R, R, 3) float32) of sample ``index``, unaugmented."""
        from face3d_data.io import load_npy, read_image

        image = read_image(self.images[index])
        label = np.asarray(load_npy(self.labels[index]), np.float32)
        return image, label

    def load(self, index, rng):
        image, label = self.read(index)
        if rng is not None:
            image, label = augment_pair(image, label, rng, self.aug)
        else:
            image = image.astype(np.float32) / 255.0
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "posmap": torch.from_numpy(np.ascontiguousarray(label.transpose(2, 0, 1))),
                "yaw": torch.tensor(self.yaws[index], dtype=torch.float32)}

    def check(self, index, full=True):
        r = self.resolution
        image_path, label_path = self.images[index], self.labels[index]
        for path in (image_path, label_path):
            if not os.path.isfile(path):
                raise InputError(path, "file not found")
        if full:
            image, label = self.read(index)
            shape = image.shape
        else:
            from PIL import Image

            try:
                with Image.open(image_path) as im:
                    shape = (im.size[1], im.size[0], 3)
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
                raise InputError(image_path, f"unreadable image: {exc}") from None
            label = np.load(label_path, mmap_mode="r", allow_pickle=False)
        if tuple(shape[:2]) != (r, r):
            raise InputError(image_path, f"crop is {shape[1]}×{shape[0]}, expected {r}×{r}")
        if tuple(label.shape) != (r, r, 3):
            raise InputError(label_path, f"position map has shape {tuple(label.shape)}, expected ({r}, {r}, 3)")
        if full and not np.all(np.isfinite(label)):
            raise InputError(label_path, "position map contains NaN/inf")
