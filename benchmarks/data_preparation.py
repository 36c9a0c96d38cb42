"""Benchmark of data preparation (not a test: timings on a shared machine are noisy).

1. Images/s of the ``data_preparation`` stage on 450x450 images (a face from scikit-image's
   astronaut photo at varied positions and scales), ``--jobs`` workers (default 2, loky), first
   with the face detector, then with given ``detections/`` files (the detector is skipped).
2. Skin mask ms per 512² image, and the ratio to the per-pixel reference loop (timed on a small
   crop, extrapolated per pixel to 512²) measured in the same run.
3. The astronaut skin means (face / hair / suit / background).
4. With ``--synth N``: dlib's 68-point error on N synthetic 300W-LP samples of the built-in model
   (``face3d_data.w300lp.synth``), mean point-to-point distance to the 2D-style labels
   (``pts_2d``) over the outer-eye-corner distance, all 68 points and without the jaw (17-67).

    python benchmarks/data_preparation.py [--images 40] [--jobs 2] [--repeats 9] [--synth 30 --yaw 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from face3d_data.io import write_image  # noqa: E402
from face3d_data.skin import reference_skin_probability, skin_mask, skin_probability  # noqa: E402

# Regions of skimage.data.astronaut() (512x512): (x0, x1, y0, y1)
ASTRONAUT_REGIONS = {
    "face": (200, 250, 110, 160),        # cheeks, nose, mouth
    "hair": (170, 290, 25, 70),
    "suit": (40, 120, 300, 450),         # the orange flight suit
    "background": (300, 380, 10, 80),    # wall between the head and the rocket
}


def face_images(count: int, size: int = 450, seed: int = 0):
    """``count`` size² RGB images, each the astronaut's head scaled and shifted at random."""
    from skimage import data

    photo = data.astronaut()
    rng = np.random.default_rng(seed)
    for _ in range(count):
        scale = rng.uniform(1.2, 2.0)
        big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        cx, cy = 220 * scale, 121 * scale  # face centre
        x0 = int(np.clip(cx - size / 2 + rng.uniform(-60, 60), 0, big.shape[1] - size))
        y0 = int(np.clip(cy - size / 2 + rng.uniform(-60, 60), 0, big.shape[0] - size))
        yield big[y0:y0 + size, x0:x0 + size]


def bench_stage(n_images: int, jobs: int) -> dict:
    from data_preparation import prepare
    from pipelines.core import build_config

    cfg = build_config("data_preparation", sets=["vis_every=0"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        detect = os.path.join(tmp, "detect")
        os.makedirs(detect)
        for i, image in enumerate(face_images(n_images)):
            write_image(os.path.join(detect, f"img_{i:04d}.jpg"), image)
        given = os.path.join(tmp, "given")
        shutil.copytree(detect, given)

        start = time.perf_counter()
        summaries, _ = prepare([detect], tmp, "train", cfg, jobs=jobs, quiet=True)
        results["detector"] = (n_images / (time.perf_counter() - start), summaries[0].failed)

        shutil.copytree(os.path.join(detect, "detections"), os.path.join(given, "detections"))
        start = time.perf_counter()
        summaries, _ = prepare([given], tmp, "train", cfg, jobs=jobs, quiet=True)
        results["given detections"] = (n_images / (time.perf_counter() - start), summaries[0].failed)
    return results


def bench_skin(repeats: int) -> dict:
    from skimage import data

    image = data.astronaut()  # 512x512
    skin_mask(image)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        skin_mask(image)
        times.append(time.perf_counter() - start)
    fast_ms = 1e3 * float(np.median(times))
    crop = image[100:132, 180:212]  # 32x32
    start = time.perf_counter()
    reference_skin_probability(crop)
    ref_ms = 1e3 * (time.perf_counter() - start) * (512 * 512) / crop[:, :, 0].size
    return {"vectorised_ms": fast_ms, "vectorised_best_ms": 1e3 * min(times), "reference_ms": ref_ms}


def astronaut_means() -> dict:
    from skimage import data

    p = skin_probability(data.astronaut())
    return {name: float(p[y0:y1, x0:x1].mean()) for name, (x0, x1, y0, y1) in ASTRONAUT_REGIONS.items()}


def synth_nme(n: int, yaw_range_deg: float) -> dict:
    from face3d_data.landmarks import detect_faces, landmarks68
    from face3d_data.morphable import builtin_model
    from face3d_data.w300lp.synth import synthesize

    model, rng = builtin_model(), np.random.default_rng(0)
    all68, inner = [], []
    for _ in range(n):
        sample = synthesize(model, rng, 450, yaw_range_deg=yaw_range_deg)
        boxes = detect_faces(sample.image)
        if not boxes:
            continue
        err = np.linalg.norm(landmarks68(sample.image, boxes[0]) - sample.pts_2d, axis=1)
        iod = np.linalg.norm(sample.pts_2d[45] - sample.pts_2d[36])
        all68.append(err.mean() / iod)
        inner.append(err[17:].mean() / iod)
    return {"detected": len(all68), "nme68": float(np.mean(all68)) if all68 else float("nan"),
            "nme_inner": float(np.mean(inner)) if inner else float("nan")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--synth", type=int, default=0, help="synthetic samples for the landmark error")
    parser.add_argument("--yaw", type=float, default=30.0, help="synthetic yaw range, degrees")
    args = parser.parse_args(argv)
    if args.synth:
        r = synth_nme(args.synth, args.yaw)
        print(f"dlib 68 on synthetic 300W-LP (yaw ±{args.yaw:g}): detected {r['detected']}/{args.synth}, "
              f"NME/IOD {r['nme68']:.3f} (all 68), {r['nme_inner']:.3f} (without jaw)")

    skin = bench_skin(args.repeats)
    print(f"skin mask 512x512: {skin['vectorised_ms']:.1f} ms median ({skin['vectorised_best_ms']:.1f} best); "
          f"per-pixel reference ~{skin['reference_ms'] / 1e3:.1f} s (32x32 crop, extrapolated) "
          f"-> {skin['reference_ms'] / skin['vectorised_ms']:.0f}x faster")
    means = astronaut_means()
    print("astronaut mean P(skin): " + ", ".join(f"{k} {v:.2f}" for k, v in means.items()))
    for mode, (rate, failed) in bench_stage(args.images, args.jobs).items():
        print(f"data_preparation 450x450, {args.jobs} jobs, {mode}: {rate:.1f} images/s "
              f"({args.images} images, {failed} failed)")


if __name__ == "__main__":
    main()
