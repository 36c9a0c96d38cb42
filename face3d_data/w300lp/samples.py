"""300W-LP-format datasets: find image/label pairs, check a dataset root, load one sample.

Layout: ``300W_LP/{AFW,HELEN,IBUG,LFPW}[_Flip]/<name>.jpg`` + ``<name>.mat`` and
``300W_LP/landmarks/<subset>/<name>_pts.mat``. Any folder tree of image/``.mat`` pairs works the
same way (this project's synthetic, fitted and rotated outputs use ``<dir>/<name>.jpg``,
``<dir>/<name>.mat`` and ``<dir>/landmarks/<name>_pts.mat``).

Everything here is runner-agnostic: :func:`dataset_inputs` gives ``(key, {role: path})`` pairs
that a stage wraps into its items.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import PHOTO_EXTENSIONS, read_image
from face3d_data.w300lp.labels import Labels, face_vertices, read_labels
from face3d_data.w300lp.pose import project

#: 300W-LP sample names: <subset>_<image id>_<face>_<view>; pt2d is the original annotation.
_300WLP_NAME = re.compile(r"^(AFW|HELEN|IBUG|LFPW)_.+_(\d+)_(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One image/label pair. ``key``: path relative to the root without extension, '/'-separated."""

    key: str
    image_path: Path
    mat_path: Path
    pts_path: Path | None = None

    def inputs(self) -> dict[str, str]:
        """``{role: path}`` of the files this sample reads: ``image``, ``mat`` and (if any) ``pts``."""
        out = {"image": str(self.image_path), "mat": str(self.mat_path)}
        if self.pts_path is not None:
            out["pts"] = str(self.pts_path)
        return out


def view_index(name: str) -> int | None:
    """The 300W-LP view number ``k`` of ``<subset>_<id>_<face>_<k>`` names, else None."""
    m = _300WLP_NAME.match(Path(name).stem)
    return int(m.group(3)) if m else None


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_samples(root: str | os.PathLike, exclude=()) -> list[Sample]:
    """Every ``<name>.<jpg|jpeg|png>`` with a ``<name>.mat`` beside it under ``root``, sorted by key.

    Hidden folders, ``landmarks`` folders and the folders in ``exclude`` (e.g. a stage's own
    output folder when it lies inside ``root``, so that a rerun never takes its outputs for
    inputs) are not searched. Each sample's ``_pts.mat`` is looked up as
    ``<root>/landmarks/<rel dir>/<name>_pts.mat`` (300W-LP) or ``<dir>/landmarks/<name>_pts.mat``
    (this project's outputs).

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset root is not a folder")
    excluded = [os.fspath(e) for e in exclude if e and os.path.isdir(e)]
    if any(_same(os.fspath(root), e) for e in excluded):
        return []
    samples = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "landmarks"
                             and not any(_same(os.path.join(dirpath, d), e) for e in excluded))
        here = Path(dirpath)
        mats = {f[:-4] for f in filenames if f.endswith(".mat") and not f.endswith("_pts.mat")}
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in PHOTO_EXTENSIONS or stem not in mats or f.startswith("."):
                continue
            rel = (here / stem).relative_to(root)
            pts = _find_pts(root, here, rel, stem)
            samples.append(Sample(rel.as_posix(), here / f, here / f"{stem}.mat", pts))
    samples.sort(key=lambda s: s.key)
    return samples


def _find_pts(root: Path, here: Path, rel: Path, stem: str) -> Path | None:
    for cand in (root / "landmarks" / rel.parent / f"{stem}_pts.mat",
                 here / "landmarks" / f"{stem}_pts.mat"):
        if cand.is_file():
            return cand
    return None


def check_data_root(root, option: str = "data_root") -> str:
    """A dataset root given as option ``option``: it must be set and be a folder.

    Returns:
        the root as a string.
    Raises:
        ConfigError: one line naming the option.
    """
    flag = "--" + option.replace("_", "-")
    if root is None or str(root) == "":
        raise ConfigError(f"{flag} is required")
    if not os.path.isdir(root):
        raise ConfigError(f"{option}: {str(root)!r} is not a folder")
    return str(root)


def dataset_inputs(root, exclude=()) -> list[tuple[str, dict[str, str]]]:
    """``(key, {role: path})`` for every sample of the dataset at ``root`` (see :func:`find_samples`)."""
    return [(s.key, s.inputs()) for s in find_samples(root, exclude=exclude)]


@dataclass
class LoadedSample:
    """One decoded sample.

    Attributes:
        image: (H, W, 3) uint8 RGB, canonical frame.
        labels: the validated :class:`~face3d_data.w300lp.labels.Labels` (canonical frame).
        projected: (N, 3) float64 vertices of the labels' face projected into the image
            (canonical x, y; z larger = closer), or None when no model was given.
    """

    image: np.ndarray
    labels: Labels
    projected: np.ndarray | None = None

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])


def load_sample(image_path, mat_path, model=None) -> LoadedSample:
    """Decode a sample's image and labels and, given ``model``, project its face into the image.

    Args:
        image_path, mat_path: the pair (e.g. ``Sample.image_path`` / ``Sample.mat_path``).
        model: the morphable model the labels' coefficients belong to, or None.
    Raises:
        InputError: naming the bad file (image, label file, or coefficients that do not fit).
    """
    image = read_image(image_path)
    labels = read_labels(mat_path)
    projected = None
    if model is not None:
        vertices = face_vertices(model, labels, mat_path)
        try:
            projected = project(vertices, labels.pose_para, image.shape[:2])
        except ValueError as exc:
            raise InputError(mat_path, str(exc)) from None
    return LoadedSample(image=image, labels=labels, projected=projected)
