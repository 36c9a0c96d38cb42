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
5. Detectors (``--detectors N``): images/s of the stage with ``--detector hog``, ``cascade`` and
   ``cnn`` on the same folder of N 450² images, most of which HOG finds (one in ``--hard-every``
   is tilted 25° and blurred so that HOG finds no face), the faces each found, and the ratios
   cascade/HOG and CNN/HOG measured in the same run; then the detectors' seconds on one large
   photo (``--large`` px square) and the HOG score sweep (``--sweep N`` variants).
6. ``--quality-picture PATH``: the vis pictures of the lowest and highest quality scores of the
   detector folder, side by side (docs/images/data_preparation_quality.png).

    python benchmarks/data_preparation.py [--images 40] [--jobs 2] [--repeats 9] [--synth 30 --yaw 30]
                                          [--detectors 40 --hard-every 5 --large 4000 --sweep 60]
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

from _machine import print_machine

from face3d_data.io import write_image
from face3d_data.skin import reference_skin_probability, skin_mask, skin_probability

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

        # our detected 5 points, given back as the input detections/ of a copy of the folder
        shutil.copytree(os.path.join(detect, "detected"), os.path.join(given, "detections"))
        start = time.perf_counter()
        summaries, _ = prepare([given], tmp, "train", cfg, jobs=jobs, quiet=True)
        results["given detections"] = (n_images / (time.perf_counter() - start), summaries[0].failed)
    return results


def tilted_blurred(image: np.ndarray, angle: float = 25.0, sigma: float = 3.0) -> np.ndarray:
    """``image`` turned ``angle`` degrees about its centre and blurred: a face HOG misses."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    turned = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(turned, (0, 0), sigma * w / 300.0)


def bench_detectors(n_images: int, jobs: int, hard_every: int, picture: str | None = None) -> dict:
    """Stage images/s and faces found with each detector on one folder (see the module docstring)."""
    from data_preparation import prepare
    from pipelines.core import build_config

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "source")
        os.makedirs(source)
        for i, image in enumerate(face_images(n_images, seed=1)):
            if hard_every and i % hard_every == hard_every - 1:
                image = tilted_blurred(image)
            write_image(os.path.join(source, f"img_{i:04d}.png"), np.ascontiguousarray(image))
        for detector in ("hog", "cascade", "cnn"):
            folder = os.path.join(tmp, detector)
            shutil.copytree(source, folder)
            cfg = build_config("data_preparation", sets=["vis_every=1" if picture else "vis_every=0"],
                               explicit={"detector": detector})
            start = time.perf_counter()
            summaries, _ = prepare([folder], tmp, "train", cfg, jobs=jobs, quiet=True)
            seconds = time.perf_counter() - start
            records = [r for r in summaries[0].records if r.get("status") == "ok"]
            results[detector] = {"rate": n_images / seconds, "seconds": seconds, "found": len(records),
                                 "by": {d: sum(r["detector"] == d for r in records) for d in ("hog", "cnn")}}
            if picture and detector == "cascade":
                quality_picture(folder, records, picture)
    return results


def _tile(image: np.ndarray, lm: np.ndarray, text: str, box=None, size: int = 300) -> np.ndarray:
    from face3d_data.viz import draw_landmarks, put_label

    if box is not None:  # crop around the face
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(box[2] - box[0], box[3] - box[1]) * 1.1
        x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
        x1, y1 = int(min(cx + half, image.shape[1])), int(min(cy + half, image.shape[0]))
        image, lm = image[y0:y1, x0:x1], lm - [x0, y0]
    scale = size / max(image.shape[:2])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:small.shape[0], :small.shape[1]] = small
    return put_label(draw_landmarks(canvas, (lm + 0.5) * scale - 0.5), text)


def quality_picture(folder: str, records: list[dict], path: str, count: int = 3) -> None:
    """Top row: the lowest and highest quality scores of the prepared folder (the detector's own
    landmarks); bottom row: the astronaut's landmarks made implausible on purpose (noise, the
    jaw dragged onto the background, shuffled), with their scores."""
    import json

    from skimage import data

    from face3d_data.io import read_image, read_landmarks
    from face3d_data.landmarks import hog_faces, landmark_quality, landmarks68

    ranked = sorted(records, key=lambda r: r["quality"])
    top = []
    for label, r in [("lowest", x) for x in ranked[:2]] + [("highest", x) for x in ranked[-2:]]:
        image = read_image(os.path.join(folder, r["key"]))
        face = json.loads(r["faces"])[0] if isinstance(r["faces"], str) else r["faces"][0]
        lm = read_landmarks(os.path.join(folder, face["landmarks_file"]))
        top.append(_tile(image, lm, f"{label} q={r['quality']:.2f} ({r['detector']})", face["box"]))
    photo = data.astronaut()[0:300, 80:380]
    box = hog_faces(photo)[0]
    lm = landmarks68(photo, box)
    rng = np.random.default_rng(0)
    jaw = lm.copy()
    jaw[0:8] += [-60.0, 0.0]
    bottom = []
    for name, points in (("5 px noise", lm + rng.normal(0, 5, lm.shape)), ("jaw on background", jaw),
                         ("mirrored, not relabelled", np.stack([299 - lm[:, 0], lm[:, 1]], axis=1)),
                         ("shuffled", lm[rng.permutation(68)])):
        q = landmark_quality(points, photo.shape[:2]).score
        bottom.append(_tile(photo, points, f"{name}: q={q:.2f}"))
    write_image(path, np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0))


def bench_large(size: int) -> dict:
    """Seconds of each detector on one size² photo (the astronaut upscaled; blurred for the CNN
    so the cascade has to fall back), at the default settings."""
    from skimage import data

    from face3d_data.landmarks import cnn_faces, find_faces, hog_faces

    big = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC)
    out = {}
    start = time.perf_counter()
    out["hog_found"] = len(hog_faces(big, max_side=2000))
    out["hog_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out["cnn_found"] = len(cnn_faces(big))
    out["cnn_s"] = time.perf_counter() - start
    hard = tilted_blurred(big)
    start = time.perf_counter()
    search = find_faces(hard)
    out["cascade_hard_s"], out["cascade_hard_detector"] = time.perf_counter() - start, search.detector
    small = data.astronaut()
    start = time.perf_counter()
    cnn_faces(small, max_side=None)
    out["cnn_512_s"] = time.perf_counter() - start
    return out


def hog_threshold_sweep(n: int) -> list[tuple[float, float, int]]:
    """(threshold, share of faces HOG keeps, extra boxes kept) on ``n`` random variants of the
    astronaut photo (turned ±40°, scaled 0.6-1.6, darkened to 25-100 %, blurred 0-2 px)."""
    from skimage import data

    from face3d_data.landmarks import hog_faces

    photo = data.astronaut()
    rng = np.random.default_rng(0)
    best, other = [], []
    for _ in range(n):
        scale = rng.uniform(0.6, 1.6)
        m = cv2.getRotationMatrix2D((220, 121), rng.uniform(-40, 40), scale)
        v = cv2.warpAffine(photo, m, (512, 512), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
        v = np.clip(v.astype(np.float32) * rng.uniform(0.25, 1.0), 0, 255).astype(np.uint8)
        blur = int(rng.integers(0, 3))
        if blur:
            v = cv2.GaussianBlur(v, (0, 0), float(blur))
        score = -9.0
        for b in hog_faces(v, threshold=-0.7):
            if np.hypot(b.centre[0] - 220, b.centre[1] - 121) < 30 * scale:
                score = max(score, b.score)
            else:
                other.append(b.score)
        best.append(score)
    best, other = np.array(best), np.array(other)
    return [(t, float(np.mean(best >= t)), int(np.sum(other >= t))) for t in (-0.3, -0.1, 0.0, 0.2, 0.5)]


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
    parser.add_argument("--detectors", type=int, default=40, help="images for the detector comparison (0 = skip)")
    parser.add_argument("--hard-every", type=int, default=5, help="one image in N is one HOG misses")
    parser.add_argument("--large", type=int, default=4000, help="side of the large photo (0 = skip)")
    parser.add_argument("--sweep", type=int, default=60, help="variants for the HOG threshold sweep (0 = skip)")
    parser.add_argument("--quality-picture", default=None, metavar="PATH",
                        help="write the lowest/highest quality vis pictures here")
    parser.add_argument("--only-detectors", action="store_true", help="skip the skin and stage benchmarks")
    args = parser.parse_args(argv)
    print_machine()
    if args.detectors:
        res = bench_detectors(args.detectors, args.jobs, args.hard_every, args.quality_picture)
        for name, r in res.items():
            print(f"detector {name:<7} 450x450, {args.jobs} jobs: {r['rate']:.2f} images/s, found "
                  f"{r['found']}/{args.detectors} (hog {r['by']['hog']}, cnn {r['by']['cnn']})")
        hog = res["hog"]["rate"]
        print(f"throughput ratio cascade/HOG {res['cascade']['rate'] / hog:.2f}, "
              f"CNN/HOG {res['cnn']['rate'] / hog:.2f}")
    if args.large:
        r = bench_large(args.large)
        print(f"{args.large}x{args.large} photo: HOG (copy <= 2000 px) {r['hog_s']:.2f} s, CNN (copy <= 640 px) "
              f"{r['cnn_s']:.2f} s, cascade on a blurred tilted copy {r['cascade_hard_s']:.2f} s "
              f"(-> {r['cascade_hard_detector']}); CNN on a 512x512 image at full size {r['cnn_512_s']:.2f} s "
              f"(at {args.large}x{args.large}: ~{r['cnn_512_s'] * (args.large / 512) ** 2:.0f} s by pixel count)")
    if args.sweep:
        for t, kept, extra in hog_threshold_sweep(args.sweep):
            print(f"HOG threshold {t:+.1f}: keeps {kept:.0%} of {args.sweep} faces, {extra} other boxes")
    if args.only_detectors:
        return
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
