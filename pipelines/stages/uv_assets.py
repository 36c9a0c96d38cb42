"""Stage ``uv_assets``: PRNet's ``uv-data`` files for any model at any resolution.

A single item writes, under ``--out``:

- ``uv_face_mask.png``   (R, R) uint8 {0, 255}
- ``uv_weight_mask.png`` (R, R) uint8 weight levels (PNG, lossless; the values are the weights)
- ``uv_kpt_ind.txt``     2×68 integers (row 0 = column u, row 1 = row v), PRNet's format
- ``uv_kpt_uv.txt``      2×68 floats, the exact texel coordinates (for bilinear decoding)
- ``uv_kpt_weights.npz`` exact keypoint decoding: ``texels`` (68, J) int64 flat indices ``v·R + u``,
  ``weights`` (68, J) float64, ``exact`` (68,) bool, ``resolution``; keypoint k =
  ``(pos.reshape(-1, 3)[texels[k]] * weights[k, :, None]).sum(0)``
- ``face_ind.txt``       the row-major flat indices of the face-mask texels, one per line
- ``triangles.txt``      (T, 3) triangulation of the face-mask texel grid, indices into face_ind
- ``uv_assets.json``     model name, resolution, weight levels, counts

All files are deterministic (same model and options, same bytes). See docs/prnet.md.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.io import write_bytes, write_image, write_text
from face3d_data.posmap import build_uv_assets
from pipelines.core import Item, Stage

ASSET_FILES = ("uv_face_mask.png", "uv_weight_mask.png", "uv_kpt_ind.txt", "uv_kpt_uv.txt",
               "uv_kpt_weights.npz", "face_ind.txt", "triangles.txt", "uv_assets.json")


def _gray_png(path: str, mask: np.ndarray) -> None:
    write_image(path, np.repeat(np.asarray(mask, np.uint8)[:, :, None], 3, axis=2))


def npz_bytes(arrays: dict) -> bytes:
    """An ``.npz`` archive (``np.load`` reads it) with fixed timestamps: same arrays, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_uv_assets(folder_path, assets, model_name: str = "") -> list[str]:
    """Write the files of :data:`ASSET_FILES` for ``assets`` into a folder; returns their names.

    ``folder_path`` is a callable ``name -> absolute path`` (e.g. ``ctx.path``) or a folder.
    """
    import os

    path = folder_path if callable(folder_path) else (lambda n: os.path.join(folder_path, n))
    _gray_png(path("uv_face_mask.png"), assets.face_mask.astype(np.uint8) * 255)
    _gray_png(path("uv_weight_mask.png"), assets.weight_mask)
    write_text(path("uv_kpt_ind.txt"), "\n".join(" ".join(str(int(v)) for v in row)
                                                 for row in assets.kpt_ind) + "\n")
    write_text(path("uv_kpt_uv.txt"), "\n".join(" ".join(f"{v:.6f}" for v in row)
                                                for row in assets.kpt_uv) + "\n")
    weights = assets.kpt_weights
    write_bytes(path("uv_kpt_weights.npz"), npz_bytes({
        "texels": weights.texels, "weights": weights.weights, "exact": weights.exact,
        "resolution": np.int64(weights.resolution)}))
    write_text(path("face_ind.txt"), "".join(f"{int(i)}\n" for i in assets.face_ind))
    write_text(path("triangles.txt"), "".join(f"{a} {b} {c}\n" for a, b, c in
                                              assets.grid_triangles.tolist()))
    info = {"model": model_name, "resolution": assets.resolution,
            "weight_levels": assets.weight_levels, "face_texels": int(assets.face_ind.size),
            "triangles": int(len(assets.grid_triangles)),
            "exact_keypoints": int(weights.exact.sum()),
            "uv_frame": "u_px = u*(R-1), v_px = (R-1) - v*(R-1); texel centres at integers"}
    write_text(path("uv_assets.json"), json.dumps(info, indent=2, sort_keys=True) + "\n")
    return list(ASSET_FILES)


def check_levels(cfg) -> None:
    levels = cfg.get("weight_levels") or {}
    if not isinstance(levels, dict):
        raise ConfigError(f"weight_levels: expected a mapping, got {levels!r}")
    if int(cfg["resolution"]) < 8:
        raise ConfigError(f"resolution: expected an integer >= 8, got {cfg['resolution']!r}")


class UVAssetsStage(Stage):
    name = "uv_assets"
    summary = "PRNet uv-data (face/weight masks, keypoint indices, face_ind, triangles) at any resolution."
    preview_count = 1

    def check_config(self, cfg):
        check_levels(cfg)

    def list_items(self, cfg, ctx):
        return [Item(key=f"uv_assets_{int(cfg['resolution'])}", inputs={"model": str(cfg["model"])})]

    def process(self, item, cfg, ctx):
        from face3d_data.morphable import load_model

        model = load_model(cfg["model"])
        try:
            assets = build_uv_assets(model, int(cfg["resolution"]), cfg.get("weight_levels") or {})
        except ValueError as exc:
            raise ConfigError(f"uv_assets: {exc}") from None
        outputs = write_uv_assets(ctx.path, assets, model.name)
        return {"outputs": outputs, "resolution": assets.resolution,
                "face_texels": int(assets.face_ind.size),
                "triangles": int(len(assets.grid_triangles))}

    def preview(self, record, cfg, ctx):
        from face3d_data.io import read_image
        from face3d_data.viz import to_uint8

        face = read_image(ctx.path("uv_face_mask.png"))
        weight = read_image(ctx.path("uv_weight_mask.png"))
        return np.concatenate([face, to_uint8(weight)], axis=1)
