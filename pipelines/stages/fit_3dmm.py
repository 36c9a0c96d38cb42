"""Stage ``fit_3dmm``: label a folder of one's own photos with 300W-LP-style 3DMM parameters.

One item per image under ``--img_folder`` (recursively; the ``landmarks/`` sub-folder is skipped).
Its 68 landmarks come from the first source that exists (``landmark_source`` column):

1. ``<img_folder>/landmarks/<stem>.txt`` — 68 ``x y`` rows, canonical frame (what
   ``data_preparation`` writes);
2. ``<stem>.txt`` beside the image (same format), then iBUG ``<stem>.pts`` (1-based);
3. ``<stem>.mat`` beside the image: ``pt3d_68`` (3, 68), else ``pt2d`` (2, 68) (1-based, y down,
   -1 = missing);
4. otherwise detected with :func:`face3d_data.landmarks.detect_landmarks68` (``detect: true``).

The landmarks are fitted with :func:`face3d_data.fitting.fit_landmarks`; the stage writes, under
``--out`` with the image's relative path, ``<stem>.mat`` in the 300W-LP layout (``Pose_Para``,
``Shape_Para``, ``Exp_Para``, ``pt2d`` = the input landmarks, ``pt3d_68`` = the model's fixed
landmark vertices projected with the fit, ``roi``) and a byte-identical copy of the image, so the
output folder is a dataset ``rotate_300wlp`` / ``posmap`` consume. Manifest columns: ``error_px``,
``error_normalized``, ``yaw_deg``, ``contour``, ``landmark_source``. Preview: the image with the
input landmarks (green) and the reprojected fit (red). See docs/fitting.md.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.coords import pt2d_to_canonical
from face3d_data.errors import ConfigError, InputError
from face3d_data.fitting import fit_landmarks
from face3d_data.io import is_image_file, read_image, read_landmarks, read_mat, write_bytes
from face3d_data.w300lp.pose import project
from face3d_data.viz import draw_landmarks
from pipelines.core import Item, Stage


# Folders that data_preparation.py writes inside an image folder: never inputs.
DERIVED_FOLDERS = frozenset({"landmarks", "mask", "detections", "vis"})


def list_images(root: str) -> list[str]:
    """Image paths relative to ``root`` ('/'-separated, sorted), skipping the derived folders
    (``landmarks/``, ``mask/``, ``detections/``, ``vis/``) at its top level."""
    found = []
    for folder, dirs, files in os.walk(root):
        if os.path.samefile(folder, root):
            dirs[:] = [d for d in dirs if d not in DERIVED_FOLDERS and not d.startswith(".")]
        dirs.sort()
        for name in sorted(files):
            if is_image_file(name):
                found.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


def find_landmark_file(root: str, rel_image: str) -> tuple[str, str] | None:
    """``(kind, path)`` of the first landmark source of an image, or None (detect)."""
    stem = os.path.splitext(rel_image)[0]
    beside = os.path.join(root, stem)
    for kind, path in (("landmarks_txt", os.path.join(root, "landmarks", stem + ".txt")),
                       ("txt", beside + ".txt"), ("pts", beside + ".pts"), ("mat", beside + ".mat")):
        if os.path.isfile(path):
            return kind, path
    return None


def read_landmark_source(kind: str, path: str) -> np.ndarray:
    """(68, 2) canonical landmarks (NaN = missing) from a file found by :func:`find_landmark_file`."""
    if kind != "mat":
        return read_landmarks(path, count=68)
    fields = read_mat(path)
    for name in ("pt3d_68", "pt2d"):
        if name in fields:
            arr = np.asarray(fields[name], np.float64)
            if arr.ndim == 2 and arr.shape[1] == 68 and arr.shape[0] in (2, 3):
                return pt2d_to_canonical(arr[:2].T)
    raise InputError(path, "no 68-point 'pt3d_68' (3, 68) or 'pt2d' (2, 68) field")


class Fit3DMM(Stage):
    name = "fit_3dmm"
    summary = "Fit a 3DMM to each image's 68 landmarks; write 300W-LP-layout .mat labels."
    preview_count = 8

    def check_config(self, cfg):
        folder = cfg.get("img_folder")
        if not folder:
            raise ConfigError("fit_3dmm: --img_folder is required")
        if not os.path.isdir(folder):
            raise ConfigError(f"fit_3dmm: img_folder {folder!r} is not a folder")
        if cfg["contour"] not in ("marching", "fixed"):
            raise ConfigError(f"contour: expected marching or fixed, got {cfg['contour']!r}")
        for key in ("lambda_shape", "lambda_exp"):
            if not float(cfg[key]) > 0:
                raise ConfigError(f"{key}: expected a positive number")
        if int(cfg["iterations"]) < 1:
            raise ConfigError("iterations: expected an integer >= 1")

    def setup(self, cfg):
        from face3d_data.morphable.loaders import load_model

        try:
            return load_model(cfg["model"])
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model: cannot load {cfg['model']!r}: {exc}") from None

    def list_items(self, cfg, ctx):
        root = cfg["img_folder"]
        items = []
        for rel in list_images(root):
            inputs = {"image": os.path.join(root, rel)}
            source = find_landmark_file(root, rel)
            if source is not None:
                inputs[source[0]] = source[1]
            items.append(Item(key=os.path.splitext(rel)[0], inputs=inputs))
        return items

    def _landmarks(self, item, cfg, image):
        for kind in ("landmarks_txt", "txt", "pts", "mat"):
            if kind in item.inputs:
                return kind, item.inputs[kind], read_landmark_source(kind, item.inputs[kind])
        if not cfg["detect"]:
            raise InputError(item.inputs["image"], "no landmark file (landmarks/<stem>.txt, <stem>.txt, "
                                                   "<stem>.pts or <stem>.mat) and detect is off")
        from face3d_data.landmarks import detect_landmarks68

        try:
            return "detected", item.inputs["image"], detect_landmarks68(image)
        except ValueError as exc:
            raise InputError(item.inputs["image"], f"landmark detection failed: {exc}") from None

    def process(self, item, cfg, ctx):
        from face3d_data.w300lp import labels_to_mat, write_labels

        model = ctx.resources
        image_path = item.inputs["image"]
        image = read_image(image_path)
        hw = image.shape[:2]
        source, source_path, points = self._landmarks(item, cfg, image)
        try:
            fit = fit_landmarks(points, model, hw, iterations=int(cfg["iterations"]),
                                lambda_shape=float(cfg["lambda_shape"]),
                                lambda_exp=float(cfg["lambda_exp"]), contour=cfg["contour"])
        except ValueError as exc:
            raise InputError(source_path, str(exc)) from None
        fixed = model.vertices(fit.shape_para, fit.exp_para)[model.landmarks]
        pt3d = project(fixed, fit.pose_para, hw)
        valid = points[~np.isnan(points).any(axis=1)]
        lo, hi = valid.min(axis=0), valid.max(axis=0)
        centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * float(cfg["roi_scale"])
        input_pts = np.where(np.isnan(points), -2.0, points)   # -2 -> -1 after the 1-based shift
        fields = labels_to_mat(fit.pose_para, fit.shape_para.astype(np.float32),
                               fit.exp_para.astype(np.float32), pt2d=input_pts, pt3d_68=pt3d,
                               roi=np.concatenate([centre - half, centre + half]),
                               extra={"fit_landmarks": fit.landmarks.T.copy()})
        ext = os.path.splitext(image_path)[1].lower()
        write_labels(ctx.path(item.key + ".mat"), fields)
        with open(image_path, "rb") as f:
            write_bytes(ctx.path(item.key + ext), f.read())
        return {"outputs": [item.key + ext, item.key + ".mat"],
                "error_px": float(fit.error_px), "error_normalized": float(fit.error_normalized),
                "yaw_deg": float(np.degrees(fit.pose_para[1])), "contour": fit.contour,
                "landmark_source": source}

    def preview(self, record, cfg, ctx):
        image_rel, mat_rel = record["outputs"]
        image = read_image(ctx.path(image_rel))
        fields = read_mat(ctx.path(mat_rel))
        given = pt2d_to_canonical(np.asarray(fields["pt2d"], np.float64).T)
        fitted = np.asarray(fields["fit_landmarks"], np.float64).T
        image = draw_landmarks(image, given[~np.isnan(given).any(axis=1)], color=(0, 255, 0))
        return draw_landmarks(image, fitted, color=(255, 0, 0))
