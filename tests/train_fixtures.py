"""Small training data sets in the real layouts, built with the real stages (shared by the trainer tests)."""

from __future__ import annotations

import os

import numpy as np

from face3d_data.io import write_datalist, write_image, write_landmarks_txt
from face3d_data.io.images import read_image
from face3d_data.skin import skin_mask
from face3d_data.w300lp import find_samples, read_labels
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class


def synth_300wlp(out: str, count: int = 8, image_size: int = 160, **options) -> str:
    """Run the ``synth_300wlp`` stage (embedded model) into ``out``; returns ``out``."""
    cfg = build_config("synth_300wlp", explicit={"count": count, "image_size": image_size,
                                                 "views_per_identity": 2, **options})
    summary = run_stage(stage_class("synth_300wlp"), RunOptions(out=str(out), jobs=1, backend="threading",
                                                                quiet=True), cfg=cfg)
    assert summary.failed == 0
    return str(out)


def rnet_layout(synth_dir: str, data_root: str, folder: str = "faces", val: int = 2) -> str:
    """Write ``data_preparation``'s layout from synthetic samples with known landmarks.

    ``<data_root>/<folder>/<name>.jpg``, ``landmarks/<name>.txt`` (canonical frame, from the labels'
    ``pt2d``), ``mask/<name>.png`` (the library's skin mask), and
    ``<data_root>/datalist/{train,val}/{images,landmarks,masks}.txt`` (the last ``val`` samples in val).
    """
    base = os.path.join(data_root, folder)
    os.makedirs(os.path.join(base, "landmarks"), exist_ok=True)
    os.makedirs(os.path.join(base, "mask"), exist_ok=True)
    rows = []
    for s in find_samples(synth_dir):
        name = os.path.basename(s.key)
        image = read_image(s.image_path)
        img_path = os.path.join(base, f"{name}.jpg")
        with open(s.image_path, "rb") as src, open(img_path, "wb") as dst:
            dst.write(src.read())
        lm_path = os.path.join(base, "landmarks", f"{name}.txt")
        write_landmarks_txt(lm_path, read_labels(s.mat_path).pt2d)
        mask_path = os.path.join(base, "mask", f"{name}.png")
        m = skin_mask(image)
        write_image(mask_path, np.repeat(m[..., None], 3, -1))
        rows.append((img_path, lm_path, mask_path))
    splits = {"train": rows[:len(rows) - val] if val else rows, "val": rows[len(rows) - val:] if val else []}
    for mode, part in splits.items():
        if not part:
            continue
        for i, kind in enumerate(("images", "landmarks", "masks")):
            write_datalist(os.path.join(data_root, "datalist", mode, f"{kind}.txt"), [(r[i],) for r in part],
                           data_root)
    return data_root
