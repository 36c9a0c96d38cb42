"""Make ``docs/images/multiview_groups.jpg``: multi-view synthetic groups and their parsing maps.

Runs the real stages into a temporary folder (``synth_300wlp`` with ``views: 3`` at the default
450² size, then ``parsing`` on it), reads the groups back with
:func:`face3d_data.io.parsing.read_multiview` / :func:`face3d_data.io.parsing.load_group`, and
draws one row per group: each view (cropped to its face, yaw printed) followed by its parsing map,
the class legend below. Deterministic (fixed seed).

    python docs/make_multiview_picture.py [--out docs/images/multiview_groups.jpg] [--groups 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from make_parsing_picture import legend  # noqa: E402  (the same class legend as the parsing picture)

from face3d_data.io import write_image
from face3d_data.io.parsing import load_group, read_multiview
from face3d_data.parsing import color_map, face_box
from face3d_data.w300lp import read_labels
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class

TILE = 150
VIEWS = 3


def run(stage: str, out: str, seed: int, **options) -> None:
    summary = run_stage(stage_class(stage), RunOptions(out=out, jobs=1, backend="threading", quiet=True, seed=seed),
                        cfg=build_config(stage, explicit=options))
    if summary.failed:
        raise SystemExit(f"{stage}: {summary.failed} item(s) failed")


def crop(image: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    pad = [(max(0, -y0), max(0, y1 - image.shape[0])), (max(0, -x0), max(0, x1 - image.shape[1]))]
    padded = np.pad(image, pad + [(0, 0)] * (image.ndim - 2), mode="edge")
    part = padded[y0 + pad[0][0]:y1 + pad[0][0], x0 + pad[1][0]:x1 + pad[1][0]]
    return cv2.resize(np.ascontiguousarray(part), (TILE, TILE), interpolation=cv2.INTER_AREA)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "multiview_groups.jpg"))
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data, maps = os.path.join(tmp, "synth"), os.path.join(tmp, "parsing")
        run("synth_300wlp", data, args.seed, count=args.groups, views=VIEWS)
        run("parsing", maps, args.seed, data_root=data)
        groups = [g for split in ("train", "val", "test")
                  for g in read_multiview(os.path.join(data, f"multiview_{split}.txt"), data, views=VIEWS,
                                          labels=True)]
        groups.sort(key=lambda g: g[0][0])
        rows = []
        for group in groups:
            batch = load_group(group, parsing_dir=maps, data_root=data)
            tiles = []
            for image, labels, mat in zip(batch["images"], batch["parsing"], batch["mat_paths"]):
                box = face_box(labels, 0.2)
                view = crop(image, box)
                yaw = np.rad2deg(float(read_labels(mat).pose_para[1]))
                cv2.putText(view, f"yaw {yaw:+.0f}", (5, TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                            (255, 255, 255), 1, cv2.LINE_AA)
                tiles += [view, crop(color_map(labels), box)]
            rows.append(np.concatenate(tiles, axis=1))
    picture = np.concatenate(rows, axis=0)
    picture = np.concatenate([picture, legend(picture.shape[1])], axis=0)
    write_image(args.out, picture, quality=88)
    print(f"wrote {args.out} {picture.shape[1]}x{picture.shape[0]}, {os.path.getsize(args.out) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
