"""Make ``docs/images/parsing_views.png``: views of synthetic identities and their parsing maps.

Each row is one identity (shape, texture and expression fixed) seen at yaw −45°, 0° and +45°;
each view is followed by its parsing map (class colours of :mod:`face3d_data.parsing.classes`),
and the class legend is drawn below. Deterministic (fixed seed).

    python docs/make_parsing_picture.py [--out docs/images/parsing_views.png]
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from face3d_data.io import write_image
from face3d_data.morphable import load_model
from face3d_data.parsing import CLASS_TABLE, PartLabeller, color_map, label_map
from face3d_data.w300lp import angles_to_matrix, project
from face3d_data.w300lp.synth import sample_coefficients, synthesize

SIZE = 224
YAWS = (-45.0, 0.0, 45.0)


class FixedPose:
    """A pose 'distribution' that always gives one yaw (duck-types PoseDistribution.sample)."""

    def __init__(self, yaw_deg: float, pitch_deg: float = 5.0):
        self.yaw, self.pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)

    def sample(self, rng, model_width, centre, image_size):
        f = 0.4 * image_size / model_width
        c = f * (angles_to_matrix(self.pitch, self.yaw, 0.0) @ centre)
        t = (image_size + 1) / 2 - c[:2]
        return np.array([self.pitch, self.yaw, 0.0, t[0], t[1], 0.0, f], np.float32)


def legend(width: int) -> np.ndarray:
    """One row of colour swatches with the class names."""
    row = np.full((28, width, 3), 255, np.uint8)
    x = 6
    for _cid, name, color in CLASS_TABLE[1:]:
        cv2.rectangle(row, (x, 7), (x + 14, 21), tuple(int(c) for c in color), -1)
        cv2.putText(row, name.replace("_", " "), (x + 18, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        x += 22 + 8 * len(name)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "parsing_views.png"))
    parser.add_argument("--identities", type=int, default=3)
    args = parser.parse_args(argv)
    model = load_model("builtin")
    labeller = PartLabeller(model, "model")
    rng = np.random.default_rng(2024)
    rows = []
    for _ in range(args.identities):
        shape = sample_coefficients(model, rng, 1.0, "shape")
        tex = sample_coefficients(model, rng, 1.0, "tex")
        tiles = []
        seed = int(rng.integers(1 << 31))
        for yaw in YAWS:
            view_rng = np.random.default_rng(seed)  # same expression draw and lighting for every view
            s = synthesize(model, view_rng, SIZE, pose=FixedPose(yaw), shape_para=shape, tex_para=tex,
                           exp_scale=0.6)
            v = model.vertices(s.labels["Shape_Para"], s.labels["Exp_Para"])
            labels = label_map(project(v, s.labels["Pose_Para"], (SIZE, SIZE)), model.triangles,
                               labeller.corner_classes(v), SIZE, SIZE)
            tiles += [s.image, color_map(labels)]
        rows.append(np.concatenate(tiles, axis=1))
    picture = np.concatenate(rows, axis=0)
    picture = np.concatenate([picture, legend(picture.shape[1])], axis=0)
    write_image(args.out, picture)
    print(f"wrote {args.out} {picture.shape[1]}x{picture.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
