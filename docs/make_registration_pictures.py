"""Make the pictures of docs/registration.md (docs/images/registration_*.png).

Registers one synthetic scan of the embedded model (``make_synthetic_scan``: identity, expression,
smooth bumps, subdivided, noised, a cheek hole, moved into metres) and renders:

- ``registration_overview.png``: the scan | the registered mesh | distance to the scan (heat map,
  0-1 mm; grey = invalid) | true correspondence error (0-5 mm) | rigid-only correspondence error;
- ``registration_views.png``: out-of-plane views of the registered, scan-coloured mesh.

Run:  python docs/make_registration_pictures.py
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.io import write_image
from face3d_data.morphable import load_model
from face3d_data.registration import Template, make_synthetic_scan, register_scan
from face3d_data.registration.landmarks import (
    apply_similarity,
    invert_similarity,
    similarity,
)
from face3d_data.registration.regions import region_classes
from face3d_data.registration.views import (
    distance_colors,
    render_view,
    shaded_colors,
    view_pose,
)
from face3d_data.viz import contact_sheet, draw_landmarks, put_label
from face3d_data.w300lp.synth import marched_landmarks

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
SIZE = 256


def main():
    model = load_model("builtin")
    template = Template.from_model(model)
    scan = make_synthetic_scan(model, seed=11, unit="m")
    reg = register_scan(template, scan.vertices, scan.triangles, scan.landmarks, np.arange(68),
                        scan_colors=scan.colors)
    sim = reg.similarity
    face = region_classes(model) >= 1
    vm = reg.vertices_model.astype(np.float64)
    pose = view_pose(vm, face, SIZE, 0.0, 25.0, fill=0.85)
    # the scan, brought into the model frame with the registration's similarity
    scan_model = invert_similarity(scan.vertices * 1000.0, sim["s"], sim["R"], sim["t"])
    sc = render_view(scan_model, scan.triangles, scan.colors * shaded_colors(scan_model, scan.triangles) / 0.8,
                     pose, SIZE).image
    grey = render_view(vm, template.triangles, shaded_colors(vm, template.triangles), pose, SIZE).image
    dist = render_view(vm, template.triangles, distance_colors(reg.distance_mm, reg.valid, 1.0), pose, SIZE).image
    err = np.linalg.norm(reg.vertices_scan - scan.truth, axis=1) * 1000.0
    s, R, t = similarity(model.mean[model.landmarks[17:]].astype(np.float64), scan.landmarks[17:])
    rigid = np.linalg.norm(apply_similarity(model.mean, s, R, t) - scan.truth, axis=1) * 1000.0
    covered = scan.on_scan
    e_img = render_view(vm, template.triangles, distance_colors(err, covered, 5.0), pose, SIZE).image
    r_img = render_view(vm, template.triangles, distance_colors(rigid, covered, 5.0), pose, SIZE).image
    tiles = [put_label(sc, "scan (synthetic, cheek hole)"), put_label(grey, "registered mesh"),
             put_label(dist, "distance to scan 0-1 mm"),
             put_label(e_img, f"corresp. error {err[covered].mean():.1f} mm"),
             put_label(r_img, f"rigid only {rigid[covered].mean():.1f} mm")]
    os.makedirs(OUT, exist_ok=True)
    write_image(os.path.join(OUT, "registration_overview.png"), contact_sheet(tiles, ncols=5, tile_size=SIZE))
    views = []
    colors = reg.colors if reg.colors is not None else shaded_colors(vm, template.triangles)
    for pitch in (-30, 0, 15):
        for yaw in (0, 30, 60, 90):
            p = view_pose(vm, face, SIZE, pitch, yaw)
            v = render_view(vm, template.triangles, colors * shaded_colors(vm, template.triangles) / 0.8, p, SIZE)
            lm = marched_landmarks(model, v.projected, p)
            views.append(put_label(draw_landmarks(v.image, lm), f"yaw {yaw} pitch {pitch}"))
    write_image(os.path.join(OUT, "registration_views.png"), contact_sheet(views, ncols=4, tile_size=200))
    print(f"status {reg.status}; correspondence error {err[covered].mean():.2f} mm (rigid {rigid[covered].mean():.2f});"
          f" NoW-crop median {reg.qa['now_crop']['median_mm']:.3f} mm; hole valid {reg.valid[scan.in_hole].mean():.2f};"
          f" {reg.qa['timing_s']['total']:.1f} s")


if __name__ == "__main__":
    main()
