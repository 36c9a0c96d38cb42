"""Stage ``data_preparation``: 68 landmarks, skin masks and datalists for Deep3DFaceRecon training.

The output folder is the image folder itself (Deep3DFaceRecon's folder contract, docs/formats.md#deep3dfacerecon-folder-layout):
for each ``<name>.<jpg|jpeg|png>`` (any case) it writes

- ``landmarks/<stem>.txt``: 68 "x y" rows, canonical frame (``deep3d_compat``: y up, 0-based);
- ``mask/<stem>.png``: skin attention mask, uint8 0-255, 3 equal channels
  (``deep3d_compat``: ``mask/<name>``, the image's own file name and format, which is what
  Deep3DFaceRecon's trainer derives the image path from);
- ``detections/<stem>.txt``: the 5 points, 0-based y down, when they were detected (a file already
  there that no earlier run wrote is an input: its 5 points replace the face detector);
- ``vis/<stem>.jpg`` for about one image in ``vis_every`` (the stage has no runner ``preview.png``:
  it would land among the input images).

Input files are never moved, renamed or modified; a failed image is a row of ``failures.csv``.
Datalists: :func:`write_datalists` (called by ``finish`` when ``data_root`` is set, and by
``data_preparation.py`` once for all folders).
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from face3d_data.coords import canonical_to_deep3d
from face3d_data.errors import ConfigError, InputError
from face3d_data.io import (PHOTO_EXTENSIONS, read_image, read_landmarks, write_datalist,
                            write_image, write_landmarks_txt)
from face3d_data.landmarks import box_from_points5, detect_faces, five_from_68, landmarks68
from face3d_data.skin import skin_mask
from face3d_data.viz import draw_landmarks
from pipelines.core import Item, Stage

DETECTORS = ("dlib", "fan")
MODES = ("train", "val")
FACE_ORDERS = ("largest", "score")


def list_images(folder: str) -> list[str]:
    """Image file names directly in ``folder`` (jpg/jpeg/png, any case), sorted."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise ConfigError(f"{folder}: image folder does not exist") from None
    return sorted(n for n in names
                  if n.lower().endswith(PHOTO_EXTENSIONS) and os.path.isfile(os.path.join(folder, n)))


def output_names(image_name: str, deep3d_compat: bool) -> dict:
    """Relative output paths of one image: landmarks, mask, detections, vis."""
    stem = os.path.splitext(image_name)[0]
    return {
        "landmarks": f"landmarks/{stem}.txt",
        "mask": f"mask/{image_name}" if deep3d_compat else f"mask/{stem}.png",
        "detections": f"detections/{stem}.txt",
        "vis": f"vis/{stem}.jpg",
    }


def datalist_rows(folder: str, records: list[dict]) -> list[tuple[str, str, str]]:
    """(image, landmarks, mask) absolute paths of the successful records of one folder, sorted."""
    rows = []
    for record in records:
        if record.get("status", "ok") != "ok":
            continue
        rows.append((record["inputs"]["image"], os.path.join(folder, record["landmarks_file"]),
                     os.path.join(folder, record["mask_file"])))
    return sorted(rows)


def write_datalists(data_root: str, mode: str, rows: list[tuple[str, str, str]]) -> dict:
    """Write ``<data_root>/datalist/<mode>/{images,landmarks,masks}.txt`` (paths relative to data_root).

    A row is kept only when its three files exist (Deep3DFaceRecon's ``check_list``).
    Returns:
        {"images": path, "landmarks": path, "masks": path}.
    """
    rows = [r for r in rows if all(os.path.isfile(p) for p in r)]
    out = os.path.join(data_root, "datalist", mode)
    paths = {}
    for column, name in enumerate(("images", "landmarks", "masks")):
        paths[name] = os.path.join(out, f"{name}.txt")
        write_datalist(paths[name], [(r[column],) for r in rows], data_root)
    return paths


def detections_written_before(folder: str) -> set[str]:
    """``detections/...`` files that an earlier run of this stage wrote (from its manifest).

    They are outputs, not inputs: a rerun with ``--overwrite`` detects again instead of reading
    them, so that its results are identical to the first run's.
    """
    path = os.path.join(folder, "manifest.parquet")
    if not os.path.isfile(path):
        return set()
    from pipelines.core import read_manifest

    try:
        frame, meta = read_manifest(path)
    except Exception:  # an unreadable manifest only costs the distinction
        return set()
    if meta.get("stage", "data_preparation") != "data_preparation" or "outputs" not in frame:
        return set()
    return {o for outputs in frame["outputs"] for o in outputs if o.startswith("detections/")}


def _is_vis_sample(name: str, every: int) -> bool:
    return every > 0 and zlib.crc32(name.encode("utf-8")) % every == 0


def _read_points5(path: str) -> np.ndarray:
    points = read_landmarks(path, count=5)
    try:
        box_from_points5(points)
    except ValueError as exc:
        raise InputError(path, f"unusable 5 points: {exc}") from None
    return points


class DataPreparation(Stage):
    name = "data_preparation"
    summary = ("Deep3DFaceRecon-style data preparation in place: 68 landmarks, skin masks, "
               "detections, datalists (never modifies inputs).")

    def check_config(self, cfg):
        if cfg["detector"] not in DETECTORS:
            raise ConfigError(f"detector: expected one of {DETECTORS}, got {cfg['detector']!r}")
        if cfg["mode"] not in MODES:
            raise ConfigError(f"mode: expected one of {MODES}, got {cfg['mode']!r}")
        if cfg["face_order"] not in FACE_ORDERS:
            raise ConfigError(f"face_order: expected one of {FACE_ORDERS}, got {cfg['face_order']!r}")
        if int(cfg["upsample"]) < 0 or int(cfg["vis_every"]) < 0:
            raise ConfigError("upsample, vis_every: expected >= 0")
        if cfg["detector"] == "fan":
            from face3d_data.landmarks.fan import _import_face_alignment, check_weights_folder

            check_weights_folder(cfg["fan_weights"])
            _import_face_alignment()

    def list_items(self, cfg, ctx):
        folder = ctx.out_dir
        ours = detections_written_before(folder)
        items = []
        for name in list_images(folder):
            inputs = {"image": os.path.join(folder, name)}
            det_name = output_names(name, False)["detections"]
            det = os.path.join(folder, det_name)
            if cfg["use_detections"] and det_name not in ours and os.path.isfile(det):
                inputs["detections"] = det
            items.append(Item(key=name, inputs=inputs))
        return items

    def process(self, item, cfg, ctx):
        image_path = item.inputs["image"]
        name = os.path.basename(image_path)
        stem = os.path.splitext(name)[0]
        clashes = [n for n in list_images(os.path.dirname(image_path))
                   if n != name and os.path.splitext(n)[0] == stem]
        if clashes:
            raise InputError(image_path, f"another image has the same stem ({', '.join(clashes)}): "
                                         "their landmark files would collide; rename one")
        names = output_names(name, cfg["deep3d_compat"])
        image = read_image(image_path)
        h, w = image.shape[:2]

        given = item.inputs.get("detections")
        if given:
            box = box_from_points5(_read_points5(given))
            n_faces, score = None, float("nan")
        else:
            boxes = detect_faces(image, upsample=int(cfg["upsample"]), min_score=float(cfg["min_score"]),
                                 order=cfg["face_order"])
            if not boxes:
                raise InputError(image_path, f"no face found (dlib HOG, upsample={cfg['upsample']}, "
                                             f"min_score={cfg['min_score']})")
            box, n_faces, score = boxes[0], len(boxes), boxes[0].score
        try:
            lm68 = landmarks68(image, box, cfg["detector"], fan_weights=cfg["fan_weights"])
        except ValueError as exc:
            raise InputError(image_path, f"landmarks failed: {exc}") from None

        outputs = []
        lm_out = canonical_to_deep3d(lm68, h) if cfg["deep3d_compat"] else lm68
        write_landmarks_txt(ctx.path(names["landmarks"]), lm_out)
        outputs.append(names["landmarks"])
        mask = skin_mask(image)
        write_image(ctx.path(names["mask"]), np.repeat(mask[:, :, None], 3, axis=2))
        outputs.append(names["mask"])
        if _is_vis_sample(name, int(cfg["vis_every"])):
            write_image(ctx.path(names["vis"]), _overlay(image, lm68, mask))
            outputs.append(names["vis"])
        if not given and cfg["write_detections"]:
            write_landmarks_txt(ctx.path(names["detections"]), five_from_68(lm68))
            outputs.append(names["detections"])
        return {"outputs": outputs, "landmarks_file": names["landmarks"], "mask_file": names["mask"],
                "points5_source": "detections" if given else "detector", "n_faces": n_faces,
                "face_score": score, "height": h, "width": w}

    def finish(self, cfg, ctx, records):
        if cfg["data_root"]:
            write_datalists(cfg["data_root"], cfg["mode"], datalist_rows(ctx.out_dir, records))


def _overlay(image: np.ndarray, lm68: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with its landmarks, beside the mask (RGB uint8, (H, 2W, 3))."""
    left = draw_landmarks(image, lm68)
    right = np.repeat(mask[:, :, None], 3, axis=2)
    return np.concatenate([left, right], axis=1)
