"""Stage ``fit_3dmm``: label a folder of one's own photos with 300W-LP-style 3DMM parameters.

One item per image under ``--img_folder`` (recursively; the ``landmarks/``, ``mask/``,
``detections/`` and ``vis/`` folders that ``data_preparation`` writes inside an image folder are
skipped). Its 68 landmarks come from the first landmark file that exists
(:mod:`face3d_data.fitting.sources`: ``landmarks/<stem>.txt``, ``<stem>.txt``, ``<stem>.pts``,
``<stem>.mat``), else are detected with :func:`face3d_data.landmarks.detect_landmarks68`
(``detect: true``); the ``landmark_source`` column says which.

The landmarks are fitted with :func:`face3d_data.fitting.fit_landmarks`; the stage writes, under
``--out`` with the image's relative path, ``<stem>.mat`` in the 300W-LP layout
(:func:`face3d_data.w300lp.labels_to_mat`: ``Pose_Para``, ``Shape_Para``, ``Exp_Para``, ``pt2d`` =
the input landmarks, ``pt3d_68`` = the model's fixed landmark vertices projected with the fit,
``roi`` = the landmarks' square box, stored 1-based like ``pt2d``) and a byte-identical copy of
the image, so the output folder is a dataset ``rotate_300wlp`` / ``posmap`` consume. Manifest
columns: ``error_px``, ``error_normalized``, ``yaw_deg``, ``contour``, ``landmark_source``.
Preview: the image with the input landmarks (green) and the reprojected fit (red). See
docs/fitting.md.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.fitting import fit_landmarks
from face3d_data.fitting.sources import SOURCE_KINDS, find_landmark_file, read_landmark_source
from face3d_data.io import list_images, read_image, read_mat, write_bytes
from face3d_data.morphable.require import require_model
from face3d_data.viz import draw_landmarks
from face3d_data.w300lp import check_data_root, labels_to_mat, project, read_labels, roi_of_points, write_labels
from pipelines.core import Item, Stage, StageOptions

#: Folders that data_preparation writes inside an image folder: never inputs.
DERIVED_FOLDERS = ("landmarks", "mask", "detections", "vis")


@dataclasses.dataclass(frozen=True)
class Fit3DMMOptions(StageOptions):
    img_folder: str | None
    model: str
    detect: bool
    contour: Literal["marching", "fixed"]
    iterations: int
    lambda_shape: float
    lambda_exp: float
    roi_scale: float


class Fit3DMMStage(Stage):
    name = "fit_3dmm"
    summary = "Fit a 3DMM to each image's 68 landmarks; write 300W-LP-layout .mat labels."
    preview_count = 8
    Options = Fit3DMMOptions
    input_options = ("img_folder",)
    asset_options = ("model",)

    def check_config(self, cfg: Fit3DMMOptions):
        check_data_root(cfg.img_folder, option="img_folder")
        for key in ("lambda_shape", "lambda_exp", "roi_scale"):
            if not getattr(cfg, key) > 0:
                raise ConfigError(f"{key}: expected a positive number")
        if cfg.iterations < 1:
            raise ConfigError("iterations: expected an integer >= 1")

    def setup(self, cfg: Fit3DMMOptions):
        return require_model(cfg.model, purpose="fitting")

    def list_items(self, cfg: Fit3DMMOptions, ctx):
        root = cfg.img_folder
        items = []
        for rel in list_images(root, skip_top=DERIVED_FOLDERS, exclude=[ctx.out_dir]):
            inputs = {"image": os.path.join(root, rel)}
            source = find_landmark_file(root, rel)
            if source is not None:
                inputs[source[0]] = source[1]
            items.append(Item(key=os.path.splitext(rel)[0], inputs=inputs))
        return items

    def _landmarks(self, item, cfg: Fit3DMMOptions, image):
        for kind in SOURCE_KINDS:
            if kind in item.inputs:
                return kind, item.inputs[kind], read_landmark_source(kind, item.inputs[kind])
        if not cfg.detect:
            raise InputError(item.inputs["image"], "no landmark file (landmarks/<stem>.txt, <stem>.txt, "
                                                   "<stem>.pts or <stem>.mat) and detect is off")
        from face3d_data.landmarks import detect_landmarks68

        try:
            return "detected", item.inputs["image"], detect_landmarks68(image)
        except ValueError as exc:
            raise InputError(item.inputs["image"], f"landmark detection failed: {exc}") from None

    def process(self, item, cfg: Fit3DMMOptions, ctx):
        model = ctx.resources
        image_path = item.inputs["image"]
        image = read_image(image_path)
        hw = image.shape[:2]
        source, source_path, points = self._landmarks(item, cfg, image)
        try:
            fit = fit_landmarks(points, model, hw, iterations=cfg.iterations,
                                lambda_shape=cfg.lambda_shape, lambda_exp=cfg.lambda_exp,
                                contour=cfg.contour)
        except ValueError as exc:
            raise InputError(source_path, str(exc)) from None
        fixed = model.vertices(fit.shape_para, fit.exp_para)[model.landmarks]
        fields = labels_to_mat(fit.pose_para, fit.shape_para.astype(np.float32),
                               fit.exp_para.astype(np.float32), pt2d=points,
                               pt3d_68=project(fixed, fit.pose_para, hw),
                               roi=roi_of_points(points, cfg.roi_scale),
                               extra={"fit_landmarks": fit.landmarks.T.copy()})
        ext = os.path.splitext(image_path)[1].lower()
        write_labels(ctx.path(item.key + ".mat"), fields)
        with open(image_path, "rb") as f:
            write_bytes(ctx.path(item.key + ext), f.read())
        return {"outputs": [item.key + ext, item.key + ".mat"],
                "error_px": float(fit.error_px), "error_normalized": float(fit.error_normalized),
                "yaw_deg": float(np.degrees(fit.pose_para[1])), "contour": fit.contour,
                "landmark_source": source}

    def preview(self, record, cfg: Fit3DMMOptions, ctx):
        image_rel, mat_rel = record["outputs"]
        image = read_image(ctx.path(image_rel))
        labels = read_labels(ctx.path(mat_rel))
        given = labels.pt2d
        fitted = np.asarray(read_mat(ctx.path(mat_rel))["fit_landmarks"], np.float64).T
        image = draw_landmarks(image, given[~np.isnan(given).any(axis=1)], color=(0, 255, 0))
        return draw_landmarks(image, fitted, color=(255, 0, 0))
