"""Stage ``data_preparation``: 68 landmarks, skin masks, quality scores and datalists in place.

The output folder is the image folder itself (Deep3DFaceRecon's folder contract): the stage writes
only new names beside its inputs (``writes_beside_inputs``). For each ``<name>.<jpg|jpeg|png>``
(any case) directly in the folder, with ``<face>`` = ``<stem>`` (``faces: largest``) or
``<stem>_face1``, ``<stem>_face2``... largest first (``faces: all``):

- ``landmarks/<face>.txt``: 68 "x y" rows, canonical frame (``deep3d_compat``: y up, 0-based);
- ``mask/<stem>.png``: skin attention mask, uint8 0-255, 3 equal channels, one per image
  (``deep3d_compat``: ``mask/<name>``, the image's own file name and format, from which
  Deep3DFaceRecon's trainer derives the image path);
- ``detected/<face>.txt``: the 5 points (0-based, y down) of each face found by a detector. This
  stage never writes ``detections/``: a ``detections/<stem>.txt`` file is always an input (the
  user's 5 points, used instead of the detector), never an earlier run's output;
- ``vis/<stem>.jpg`` for about one image in ``vis_every``: boxes (taken / not taken, detector,
  score), landmarks, quality, and the mask.

Input files are never moved, renamed or modified; a failed image is a row of ``failures.csv``.
Datalists: :func:`write_datalists` (our layout, percent-encoded paths relative to ``data_root``)
and :func:`write_deep3d_datalists` (Deep3DFaceRecon's: ``./datalist/<mode>/`` relative to the
working directory), called by ``finish`` when ``data_root`` is set and by ``data_preparation.py``
once for all folders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zlib
from typing import Literal

import numpy as np

from face3d_data.coords import canonical_to_deep3d
from face3d_data.errors import ConfigError, InputError
from face3d_data.io import (
    PHOTO_EXTENSIONS,
    read_image,
    read_landmarks,
    write_datalist,
    write_image,
    write_landmarks_txt,
    write_text,
)
from face3d_data.landmarks import FaceBox, box_from_points5, five_from_68, landmarks68
from face3d_data.landmarks.detect import find_faces
from face3d_data.landmarks.quality import landmark_quality
from face3d_data.skin import skin_mask
from face3d_data.viz import draw_landmarks, put_label
from pipelines.core import Item, Stage, StageOptions

MODES = ("train", "val")


@dataclasses.dataclass(frozen=True)
class DataPreparationOptions(StageOptions):
    detector: Literal["cascade", "hog", "cnn"]
    hog_upsample: int
    hog_threshold: float
    hog_max_side: int | None
    cnn_upsample: int
    cnn_threshold: float
    cnn_max_side: int | None
    cnn_roll_search: bool
    faces: Literal["largest", "all"]
    landmarker: Literal["dlib", "fan"]
    fan_weights: str | None
    use_detections: bool
    write_detections: bool
    quality_model: str
    min_quality: float
    deep3d_compat: bool
    vis_every: int
    data_root: str | None
    mode: Literal["train", "val"]


def list_images(folder: str) -> list[str]:
    """Image file names directly in ``folder`` (jpg/jpeg/png, any case), sorted."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise ConfigError(f"{folder}: image folder does not exist") from None
    return sorted(n for n in names
                  if n.lower().endswith(PHOTO_EXTENSIONS) and os.path.isfile(os.path.join(folder, n)))


def face_name(stem: str, index: int, faces: str) -> str:
    """Output stem of face ``index`` (0 = largest) of image ``stem``: ``stem`` or ``stem_face<k>``."""
    return stem if faces == "largest" else f"{stem}_face{index + 1}"


def output_names(image_name: str, deep3d_compat: bool, face: str | None = None) -> dict:
    """Relative output paths of one image (``face``: the face's output stem, default the image's)."""
    stem = os.path.splitext(image_name)[0]
    face = face or stem
    return {
        "landmarks": f"landmarks/{face}.txt",
        "mask": f"mask/{image_name}" if deep3d_compat else f"mask/{stem}.png",
        "detected": f"detected/{face}.txt",
        "detections": f"detections/{stem}.txt",
        "vis": f"vis/{stem}.jpg",
    }


_FACE_SUFFIX = re.compile(r"^(.*)_face[0-9]+$")


def stem_clashes(names: list[str], faces: str) -> dict[str, list[str]]:
    """Images whose outputs would collide: ``{name: [other names]}``.

    Two images collide when they share a stem (``a.jpg``, ``a.png``), and with ``faces: all`` also
    when one's stem is another's face name (``a.jpg`` and ``a_face1.jpg``).
    """
    by_stem: dict[str, list[str]] = {}
    for n in names:
        by_stem.setdefault(os.path.splitext(n)[0], []).append(n)
    clashes: dict[str, set[str]] = {}
    for group in by_stem.values():
        if len(group) > 1:
            for n in group:
                clashes.setdefault(n, set()).update(m for m in group if m != n)
    if faces == "all":
        for stem, group in by_stem.items():
            match = _FACE_SUFFIX.match(stem)
            if match and match.group(1) in by_stem:
                for n in group:
                    for m in by_stem[match.group(1)]:
                        clashes.setdefault(n, set()).add(m)
                        clashes.setdefault(m, set()).add(n)
    return {n: sorted(o) for n, o in clashes.items()}


def _faces_of(record: dict) -> list[dict]:
    faces = record.get("faces") or []
    return json.loads(faces) if isinstance(faces, str) else list(faces)


def datalist_rows(folder: str, records: list[dict], min_quality: float = 0.0) -> list[tuple[str, str, str]]:
    """(image, landmarks, mask) absolute paths of every face of the successful records of one
    folder whose quality is at least ``min_quality``, sorted."""
    rows = []
    for record in records:
        if record.get("status", "ok") != "ok":
            continue
        for face in _faces_of(record):
            quality = face.get("quality")
            if min_quality > 0 and not (quality is not None and quality >= min_quality):
                continue
            rows.append((record["inputs"]["image"], os.path.join(folder, face["landmarks_file"]),
                         os.path.join(folder, face["mask_file"])))
    return sorted(rows)


def _existing(rows):
    return [r for r in rows if all(os.path.isfile(p) for p in r)]


def write_datalists(data_root: str, mode: str, rows: list[tuple[str, str, str]]) -> dict:
    """Write ``<data_root>/datalist/<mode>/{images,landmarks,masks}.txt`` (paths relative to
    data_root, written by :func:`face3d_data.io.write_datalist`: whitespace percent-encoded, so
    read them with :func:`face3d_data.io.read_datalist`).

    A row is kept only when its three files exist (Deep3DFaceRecon's ``check_list``).
    Returns:
        {"images": path, "landmarks": path, "masks": path}.
    """
    rows = _existing(rows)
    out = os.path.join(data_root, "datalist", mode)
    paths = {}
    for column, name in enumerate(("images", "landmarks", "masks")):
        paths[name] = os.path.join(out, f"{name}.txt")
        write_datalist(paths[name], [(r[column],) for r in rows], data_root)
    return paths


def deep3d_derived_paths(mask_line: str) -> tuple[str, str]:
    """The (image, landmarks) paths Deep3DFaceRecon's trainer derives from one ``masks.txt`` line
    (its ``data/flist_dataset.py``: the line stripped; image = the line without ``mask/``;
    landmarks = every ``mask`` replaced by ``landmarks``, the extension by ``.txt``)."""
    line = mask_line.strip()
    image = line.replace("mask/", "")
    landmarks = ".".join(line.replace("mask", "landmarks").split(".")[:-1]) + ".txt"
    return image, landmarks


def deep3d_line(path: str, cwd: str | None = None) -> str:
    """``path`` as a Deep3DFaceRecon list line: relative to the working directory, ``/``-separated."""
    return os.path.relpath(os.path.abspath(path), cwd or os.getcwd()).replace(os.sep, "/")


def check_deep3d_row(image: str, landmarks: str, mask: str, cwd: str | None = None) -> None:
    """Raise ``InputError(image, ...)`` when Deep3DFaceRecon's trainer, given the mask line of
    this row, would not find exactly these image and landmark files (a ``mask`` in a folder or
    file name, a line break, leading or trailing whitespace)."""
    line = deep3d_line(mask, cwd)
    if any(c in line for c in "\r\n") or line != line.strip():
        raise InputError(image, "its path cannot be a Deep3DFaceRecon list line (line break or "
                                "leading/trailing whitespace); rename it or drop --deep3d-compat")
    derived_image, derived_lm = deep3d_derived_paths(line)
    if derived_image != deep3d_line(image, cwd) or derived_lm != deep3d_line(landmarks, cwd):
        raise InputError(image, f"Deep3DFaceRecon's trainer would derive {derived_image} and "
                                f"{derived_lm} from the mask line {line} (it replaces every 'mask' "
                                "in the path); rename the folder or file, or drop --deep3d-compat")


def write_deep3d_datalists(mode: str, rows: list[tuple[str, str, str]], cwd: str | None = None) -> dict:
    """Write Deep3DFaceRecon's lists where its ``train.py`` looks by default:
    ``<cwd>/datalist/<mode>/{landmarks,images,masks}.txt``, one path per line relative to the
    working directory, as its own ``data_preparation.py`` writes them (no escaping: its reader
    only strips each line). Rows whose files are missing are dropped.

    Returns:
        {"images": path, "landmarks": path, "masks": path}.
    """
    cwd = cwd or os.getcwd()
    rows = _existing(rows)
    out = os.path.join(cwd, "datalist", mode)
    paths = {}
    for column, name in enumerate(("images", "landmarks", "masks")):
        paths[name] = os.path.join(out, f"{name}.txt")
        write_text(paths[name], "".join(deep3d_line(r[column], cwd) + "\n" for r in rows))
    return paths


def detections_written_before(folder: str) -> set[str]:
    """``detections/...`` files that an earlier version of this stage wrote (from its manifest).

    Versions before ``detected/`` existed wrote the detected 5 points to ``detections/``; those
    files are outputs, not inputs, and are never read as given points. Each later run records
    them again (column ``ignored_detections``), so the distinction survives reruns.
    """
    path = os.path.join(folder, "manifest.parquet")
    if not os.path.isfile(path):
        return set()
    from pipelines.core import read_manifest

    try:
        frame, meta = read_manifest(path)
    except Exception:  # noqa: BLE001 (an unreadable manifest only costs the distinction)
        return set()
    if meta.get("stage", "data_preparation") != "data_preparation" or "outputs" not in frame:
        return set()
    found = {o for outputs in frame["outputs"] for o in outputs if o.startswith("detections/")}
    if "ignored_detections" in frame:
        found |= {v for v in frame["ignored_detections"] if isinstance(v, str) and v}
    return found


def _is_vis_sample(name: str, every: int) -> bool:
    return every > 0 and zlib.crc32(name.encode("utf-8", "surrogateescape")) % every == 0


def _read_points5(path: str) -> np.ndarray:
    points = read_landmarks(path, count=5)
    try:
        box_from_points5(points)
    except ValueError as exc:
        raise InputError(path, f"unusable 5 points: {exc}") from None
    return points


def _box_dict(box: FaceBox) -> list[float]:
    """[left, top, right, bottom] (inclusive, canonical frame) of the upright box; see ``roll_deg``."""
    return [round(float(v), 3) for v in (box.left, box.top, box.right, box.bottom)]


class DataPreparationStage(Stage):
    name = "data_preparation"
    summary = ("Deep3DFaceRecon-style data preparation in place: face detection (HOG, then CNN), "
               "68 landmarks, quality scores, skin masks, datalists (never modifies inputs).")
    Options = DataPreparationOptions
    writes_beside_inputs = True
    asset_options = ("quality_model", "fan_weights")

    def check_config(self, cfg: DataPreparationOptions):
        for key in ("hog_upsample", "cnn_upsample", "vis_every"):
            if cfg[key] < 0:
                raise ConfigError(f"{key}: expected >= 0, got {cfg[key]}")
        for key in ("hog_max_side", "cnn_max_side"):
            if cfg[key] is not None and cfg[key] < 32:
                raise ConfigError(f"{key}: expected >= 32 or null, got {cfg[key]}")
        if not 0.0 <= cfg.min_quality <= 1.0:
            raise ConfigError(f"min_quality: expected a score in [0, 1], got {cfg.min_quality}")
        if cfg.deep3d_compat and cfg.faces == "all":
            raise ConfigError("faces all with deep3d_compat: Deep3DFaceRecon's trainer derives the "
                              "image from the mask name, so several faces of one image cannot be "
                              "listed; use faces largest")
        if cfg.detector in ("cascade", "cnn"):
            from face3d_data.landmarks.dlib_models import cnn_detector_path

            cnn_detector_path()
        if cfg.landmarker == "fan":
            from face3d_data.landmarks.fan import check_fan

            check_fan(cfg.fan_weights)

    def setup(self, cfg: DataPreparationOptions):
        from face3d_data.morphable.require import require_model

        # loaded and checked once, before any item: a bad file is one ConfigError (exit 2)
        return require_model(cfg.quality_model, option="quality_model", purpose="the fit quality score")

    def list_items(self, cfg: DataPreparationOptions, ctx):
        folder = ctx.out_dir
        legacy = detections_written_before(folder)
        names = list_images(folder)
        clashes = stem_clashes(names, cfg.faces)
        items = []
        for name in names:
            inputs = {"image": os.path.join(folder, name)}
            det_name = output_names(name, False)["detections"]
            det = os.path.join(folder, det_name)
            if os.path.isfile(det):
                if det_name in legacy:
                    inputs["earlier_output"] = det  # never read: recorded so it stays known
                elif cfg.use_detections:
                    inputs["detections"] = det
            for i, other in enumerate(clashes.get(name, [])):
                inputs[f"clash_{i}"] = os.path.join(folder, other)
            items.append(Item(key=name, inputs=inputs))
        return items

    def _faces(self, image, item, cfg: DataPreparationOptions):
        """(boxes largest first, detector name, detectors tried) of one image."""
        given = item.inputs.get("detections")
        if given:
            return [box_from_points5(_read_points5(given))], "given", ()
        search = find_faces(image, cfg.detector, hog_upsample=cfg.hog_upsample,
                            hog_threshold=cfg.hog_threshold, hog_max_side=cfg.hog_max_side,
                            cnn_upsample=cfg.cnn_upsample, cnn_threshold=cfg.cnn_threshold,
                            cnn_max_side=cfg.cnn_max_side, cnn_roll_search=cfg.cnn_roll_search)
        if not search.boxes:
            raise InputError(item.inputs["image"], "no face found by " + ", then by ".join(search.tried))
        return list(search.boxes), search.detector, search.tried

    def process(self, item, cfg: DataPreparationOptions, ctx):
        image_path = item.inputs["image"]
        name = os.path.basename(image_path)
        stem = os.path.splitext(name)[0]
        others = [os.path.basename(p) for k, p in item.inputs.items() if k.startswith("clash_")]
        if others:
            raise InputError(image_path, f"its outputs would collide with those of {', '.join(others)} "
                                         "(same stem, or a face name of faces all); rename one")
        image = read_image(image_path)
        h, w = image.shape[:2]
        boxes, detector, tried = self._faces(image, item, cfg)
        taken = boxes[:1] if cfg.faces == "largest" else boxes
        model = ctx.resources

        outputs, faces, drawn = [], [], []
        mask_name = output_names(name, cfg.deep3d_compat)["mask"]
        for index, box in enumerate(taken):
            names = output_names(name, cfg.deep3d_compat, face_name(stem, index, cfg.faces))
            if cfg.deep3d_compat:
                check_deep3d_row(image_path, ctx.path(names["landmarks"]), ctx.path(mask_name))
            try:
                lm68 = landmarks68(image, box, cfg.landmarker, fan_weights=cfg.fan_weights)
            except ValueError as exc:
                raise InputError(image_path, f"landmarks failed: {exc}") from None
            quality = landmark_quality(lm68, (h, w), model)
            lm_out = canonical_to_deep3d(lm68, h) if cfg.deep3d_compat else lm68
            write_landmarks_txt(ctx.path(names["landmarks"]), lm_out)
            outputs.append(names["landmarks"])
            if detector != "given" and cfg.write_detections:
                write_landmarks_txt(ctx.path(names["detected"]), five_from_68(lm68))
                outputs.append(names["detected"])
            faces.append({"name": face_name(stem, index, cfg.faces), "box": _box_dict(box),
                          "roll_deg": float(box.roll),
                          "detector": detector, "detector_score": box.score,
                          "landmarks_file": names["landmarks"], "mask_file": mask_name,
                          **quality.as_dict()})
            drawn.append((box, lm68, quality.score, faces[-1]["name"]))

        mask = skin_mask(image)
        write_image(ctx.path(mask_name), np.repeat(mask[:, :, None], 3, axis=2))
        outputs.append(mask_name)
        if _is_vis_sample(name, cfg.vis_every):
            vis = output_names(name, False)["vis"]
            write_image(ctx.path(vis), vis_picture(image, mask, boxes, drawn, detector))
            outputs.append(vis)
        first = faces[0]
        return {"outputs": outputs, "faces": faces, "detector": detector,
                "detectors_tried": " -> ".join(tried), "n_faces": len(boxes),
                "landmarks_file": first["landmarks_file"], "mask_file": mask_name,
                "quality": first["quality"], "quality_error_px": first["quality_error_px"],
                "quality_error_eye": first["quality_error_eye"],
                "quality_prior_energy": first["quality_prior_energy"], "height": h, "width": w,
                "ignored_detections": (output_names(name, False)["detections"]
                                       if "earlier_output" in item.inputs else "")}

    def finish(self, cfg: DataPreparationOptions, ctx, records):
        if cfg.data_root:
            rows = datalist_rows(ctx.out_dir, records, cfg.min_quality)
            if cfg.deep3d_compat:
                write_deep3d_datalists(cfg.mode, rows)
            else:
                write_datalists(cfg.data_root, cfg.mode, rows)


_TAKEN, _NOT_TAKEN = (40, 220, 40), (230, 60, 60)


def vis_picture(image: np.ndarray, mask: np.ndarray, boxes: list[FaceBox], taken: list,
                detector: str, max_side: int = 640) -> np.ndarray:
    """The visual check of one image: every box found (green = taken, labelled with the face name,
    detector, its score and the quality; red = not taken), the taken faces' landmarks, and the
    mask beside it. RGB uint8 (H', 2W', 3), scaled so the longer side of each half is at most
    ``max_side``.

    Args:
        boxes: all boxes the detector returned (canonical frame).
        taken: ``[(box, landmarks (68, 2), quality score, face name)]`` of the faces prepared.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    left = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    right = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) if scale < 1 else mask
    taken_boxes = {id(t[0]) for t in taken}
    font = max(0.35, size[0] / 900)

    def outline(b):
        return np.round((b.corners() + 0.5) * scale - 0.5).astype(np.int32).reshape(-1, 1, 2)

    for b in boxes:
        if id(b) not in taken_boxes:
            cv2.polylines(left, [outline(b)], True, _NOT_TAKEN, 2, cv2.LINE_AA)
    for box, lm, score, face in taken:
        left = draw_landmarks(left, (lm + 0.5) * scale - 0.5)
        corners = outline(box)
        cv2.polylines(left, [corners], True, _TAKEN, 2, cv2.LINE_AA)
        p0 = corners[:, 0].min(axis=0)
        label = f"{face} {detector}"
        if np.isfinite(box.score):
            label += f" {box.score:.2f}"
        if box.roll:
            label += f" roll {box.roll:+.0f}"
        label += f" q={score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        x0, y0 = max(min(int(p0[0]), left.shape[1] - tw - 4), 0), max(int(p0[1]) - th - base - 4, 0)
        cv2.rectangle(left, (x0, y0), (x0 + tw + 4, y0 + th + base + 4), (0, 0, 0), -1)
        cv2.putText(left, label, (x0 + 2, y0 + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font, _TAKEN, 1,
                    cv2.LINE_AA)
    left = put_label(left, f"{len(taken)} of {len(boxes)} face(s) taken; red: not taken")
    return np.concatenate([left, np.repeat(right[:, :, None], 3, axis=2)], axis=1)
