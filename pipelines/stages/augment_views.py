"""Stage ``augment_views``: out-of-plane views of registered scans with 300W-LP-style labels.

One item per registered scan in ``--registered`` (the output of ``register_scans``; scans that
failed QA are skipped and listed in ``skipped.txt`` unless ``include_failed``). Each view of the
yaw × pitch grid (jittered per scan, seeded) renders the registered mesh with the colours sampled
from its scan (:mod:`face3d_data.registration.views`). Per view, under ``OUT/<stem>/``:

- ``<stem>_<yaw>_<pitch>.jpg`` (nominal angles in the name, actual ones in the labels);
- ``<stem>_<yaw>_<pitch>.mat`` in the 300W-LP layout: ``Pose_Para`` (the view's pose of the
  registered mesh in the model frame), ``Shape_Para`` / ``Exp_Para`` (the registration's 3DMM fit:
  stages that rebuild vertices from coefficients see that fit, not the registered detail),
  ``pt2d`` (2D-style landmarks, jaw re-marched for the view), ``pt3d_68`` (projected landmark
  vertices), ``roi``;
- ``<stem>_<yaw>_<pitch>.npz``: ``vertices`` (N, 3) the registered mesh posed in the image frame
  (canonical, z larger = closer), ``pose_para``, ``lm68_2d`` (68, 2), ``lm68_3d`` (68, 3),
  ``visible``, ``vertex_valid`` (registered validly and visible), ``vertex_weight`` (N,).

``OUT/<stem>/mesh.npz`` holds the registered mesh once (``vertices_model``, ``triangles``,
``colors``, ``valid``, ``weight``) and ``contact_sheet.jpg`` the views with their landmarks.
``finish`` writes ``train.txt`` / ``test.txt`` (``image mat`` rows, the registration's subject
split) and ``views.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import write_datalist, write_image, write_text
from face3d_data.io.atomic import write_bytes
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class AugmentViewsOptions(StageOptions):
    registered: str | None
    model: str
    yaws: str
    pitches: str
    jitter: float
    both_sides: bool
    size: int
    fill: float
    background: str
    min_visible_valid: float
    include_failed: bool
    jpeg_quality: int


def _grid(cfg):
    from face3d_data.registration.views import parse_angles

    yaws = parse_angles(cfg.yaws)
    if cfg.both_sides:
        yaws = sorted(set(yaws) | {-y for y in yaws})
    return yaws, parse_angles(cfg.pitches)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class AugmentViewsStage(Stage):
    name = "augment_views"
    summary = "Out-of-plane views (yaw x pitch) of registered scans with 300W-LP labels, visibility and weights."
    Options = AugmentViewsOptions
    input_options = ("registered",)
    asset_options = ("model",)

    def check_config(self, cfg):
        if not cfg.registered:
            raise ConfigError("--registered is required (the output folder of register_scans)")
        if not os.path.isdir(cfg.registered):
            raise ConfigError(f"registered: {cfg.registered!r} is not a folder")
        try:
            yaws, pitches = _grid(cfg)
        except ValueError as exc:
            raise ConfigError(f"yaws/pitches: {exc}") from None
        if not yaws or not pitches:
            raise ConfigError("yaws and pitches: expected at least one angle each")
        if any(abs(y) > 90 for y in yaws) or any(abs(p) > 90 for p in pitches):
            raise ConfigError("yaws and pitches: expected angles within [-90, 90] degrees")
        if cfg.size < 32:
            raise ConfigError(f"size: expected at least 32, got {cfg.size}")
        if not 0 < cfg.fill <= 1.5:
            raise ConfigError(f"fill: expected (0, 1.5], got {cfg.fill}")
        if cfg.jitter < 0:
            raise ConfigError("jitter: expected >= 0")
        if cfg.background not in ("black", "gray", "procedural"):
            raise ConfigError(f"background: expected black, gray or procedural, got {cfg.background!r}")
        if not 1 <= cfg.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")

    def setup(self, cfg):
        from face3d_data.morphable.require import require_model

        return require_model(cfg.model, needs=("triangles",), purpose="view augmentation")

    def _scans(self, cfg):
        found = []
        for name in sorted(os.listdir(cfg.registered)):
            npz = os.path.join(cfg.registered, name, "registered.npz")
            qa = os.path.join(cfg.registered, name, "qa.json")
            if os.path.isfile(npz) and os.path.isfile(qa):
                found.append((name, npz, qa))
        return found

    def list_items(self, cfg, ctx):
        items = []
        for name, npz, qa in self._scans(cfg):
            if not cfg.include_failed and _qa(qa).get("status") != "ok":
                continue
            items.append(Item(key=name, inputs={"registered": npz, "qa": qa}))
        return items

    def process(self, item, cfg, ctx):
        from face3d_data.registration.views import render_view, shaded_colors, view_pose
        from face3d_data.viz import contact_sheet, draw_landmarks
        from face3d_data.w300lp import labels_to_mat, roi_of_points, write_labels
        from face3d_data.w300lp.synth import marched_landmarks, procedural_background

        model = ctx.resources
        qa = _qa(item.inputs["qa"])
        try:
            data = np.load(item.inputs["registered"])
            vm = np.asarray(data["vertices_model"], np.float64)
            tri = np.asarray(data["triangles"], np.int32)
            valid = np.asarray(data["valid"], bool)
            weight = np.asarray(data["weight"], np.float32)
            classes = np.asarray(data["classes"])
            colors = (np.asarray(data["colors"], np.float32) if "colors" in data.files
                      else shaded_colors(vm, tri))
            shape_para, exp_para = np.asarray(data["shape_para"]), np.asarray(data["exp_para"])
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(item.inputs["registered"], f"not a register_scans output: {exc}") from None
        if len(vm) != model.n_vertices:
            raise InputError(item.inputs["registered"], f"{len(vm)} vertices but model {model.name!r} has "
                                                        f"{model.n_vertices}: register with the same --model")
        stem, size = item.key, cfg.size
        write_bytes(ctx.path(stem, "mesh.npz"), _npz_bytes(vertices_model=vm.astype(np.float32), triangles=tri,
                                                            colors=colors, valid=valid, weight=weight))
        outputs = [f"{stem}/mesh.npz"]
        face = classes >= 1
        features = classes == 2
        yaws, pitches = _grid(cfg)
        rng = ctx.rng
        tiles, labels, views = [], [], []
        for pitch in pitches:
            for yaw in yaws:
                jy, jp = rng.uniform(-cfg.jitter, cfg.jitter, 2)
                y_deg = float(np.clip(yaw + jy, -90, 90))
                p_deg = float(np.clip(pitch + jp, -90, 90))
                pose = view_pose(vm, face, size, p_deg, y_deg, fill=cfg.fill)
                bg = None
                if cfg.background == "gray":
                    bg = np.full((size, size, 3), 128, np.uint8)
                elif cfg.background == "procedural":
                    bg = procedural_background(rng, size)
                view = render_view(vm, tri, colors, pose, size, bg)
                vv = valid & view.visible
                share = float(vv[features].mean()) if features.any() else float(vv.mean())
                if share < cfg.min_visible_valid:
                    continue
                name = f"{stem}_{round(yaw)}_{round(pitch)}"
                lm3d = view.projected[model.landmarks]
                lm2d = marched_landmarks(model, view.projected, pose)
                fields = labels_to_mat(pose, shape_para, exp_para, pt2d=lm2d, pt3d_68=lm3d,
                                       roi=roi_of_points(lm2d))
                write_image(ctx.path(stem, name + ".jpg"), view.image, quality=cfg.jpeg_quality)
                write_labels(ctx.path(stem, name + ".mat"), fields)
                write_bytes(ctx.path(stem, name + ".npz"), _npz_bytes(
                    vertices=view.projected.astype(np.float32), pose_para=np.asarray(pose, np.float64),
                    lm68_2d=lm2d.astype(np.float32), lm68_3d=lm3d.astype(np.float32), visible=view.visible,
                    vertex_valid=vv, vertex_weight=(weight * view.visible).astype(np.float32),
                    yaw_deg=np.float64(y_deg), pitch_deg=np.float64(p_deg)))
                outputs += [f"{stem}/{name}.jpg", f"{stem}/{name}.mat", f"{stem}/{name}.npz"]
                tiles.append(draw_landmarks(view.image, lm2d))
                labels.append(f"{y_deg:.0f}/{p_deg:.0f}")
                views.append({"view": f"{stem}/{name}", "yaw_deg": y_deg, "pitch_deg": p_deg,
                              "visible_valid_features": share})
        if tiles:
            sheet = contact_sheet(tiles, ncols=max(1, len(yaws)), labels=labels, tile_size=min(size, 160))
            write_image(ctx.path(stem, "contact_sheet.jpg"), sheet, quality=90)
            outputs.append(f"{stem}/contact_sheet.jpg")
        write_text(ctx.path(stem, "views.json"), json.dumps(views, indent=1) + "\n")
        outputs.append(f"{stem}/views.json")
        return {"outputs": outputs, "views": len(views), "split": qa.get("split", "train"),
                "subject": qa.get("subject", stem), "status": qa.get("status", "")}

    def finish(self, cfg, ctx, records):
        records = sorted(records, key=lambda r: r["key"])
        rows = {"train": [], "test": []}
        table = io.StringIO()
        w = csv.writer(table, lineterminator="\n")
        w.writerow(["view", "scan", "subject", "split", "yaw_deg", "pitch_deg", "visible_valid_features"])
        for r in records:
            with open(ctx.path(r["key"], "views.json"), encoding="utf-8") as f:
                views = json.load(f)
            split = r.get("split", "train")
            for v in views:
                rows.setdefault(split, []).append((ctx.path(v["view"] + ".jpg"), ctx.path(v["view"] + ".mat")))
                w.writerow([v["view"], r["key"], r.get("subject", ""), split, f"{v['yaw_deg']:.3f}",
                            f"{v['pitch_deg']:.3f}", f"{v['visible_valid_features']:.4f}"])
        for split, split_rows in rows.items():
            write_datalist(ctx.path(f"{split}.txt"), split_rows, ctx.out_dir)
        write_text(ctx.path("views.csv"), table.getvalue())
        listed = {r["key"] for r in records}
        skipped = [name for name, _, qa in self._scans(cfg)
                   if name not in listed and _qa(qa).get("status") != "ok"]
        write_text(ctx.path("skipped.txt"), "".join(s + "\n" for s in skipped))

    def preview(self, record, cfg, ctx):
        from face3d_data.io import read_image

        path = ctx.path(record["key"], "contact_sheet.jpg")
        return read_image(path) if os.path.isfile(path) else None


def _qa(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable qa.json: {exc}") from None
