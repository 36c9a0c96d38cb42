"""Benchmark of the ``rotate_300wlp`` stage on generated 450×450 JPEG samples.

    python benchmarks/rotate.py [--samples 400] [--jobs 2]

1. Generates samples with the 53k-vertex, 199+29-mode random fixture (as benchmarks/posmap.py).
2. Where time goes, one process, per output (8 angles per input), on the stage's path: decode
   (JPEG + .mat, once per input, with the per-input set-up of ``ImageRotation`` / ``LabelRotation``:
   BGR copy, pose matrix, canonical points), rotate (image warp into the reused BGR buffer),
   labels (analytic update), jpeg (encode), mat (the label file's bytes: ``encode_mat``'s direct
   v5 writer), write (two atomic files).
   Same run: ``scipy.io.savemat`` for the same label files (what ``encode_mat`` used before; the
   bytes are checked equal), and the ratio.
   Same run: the per-angle path with nothing shared between the angles of an input
   (``rotate_image`` in RGB + ``encode_image`` + ``rotate_label_fields``) against the shared one
   (``ImageRotation.jpeg`` + ``LabelRotation.rotate``), in memory (no files), interleaved, min of
   3, bytes checked equal; and OpenCV's threads: CPU and wall time of one warp with OpenCV's
   default thread count and with one thread (what each worker process uses).
3. A straightforward reference in the same run: decode the image again for every angle, rotate
   with ``skimage.transform.rotate``, write with ``cv2.imwrite``/``scipy.io.savemat``; the ratio.
4. End to end: the real stage through the runner (``--jobs`` loky workers), outputs/s of a cold
   run (fresh workers) and the steady rate (N - n) / (t_N - t_n) of two warm runs of N and n = N/4
   inputs, with the files written into new page-cache pages and into just-freed ones
   (``benchmarks/_runs.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import print_machine  # noqa: E402
from _runs import end_to_end  # noqa: E402

from benchmarks.posmap import list_pairs, make_dataset  # noqa: E402
from face3d_data.augment import angle_suffix, in_plane_rotation, rotate_image, rotate_label_fields  # noqa: E402
from face3d_data.augment.rotate import ImageRotation, LabelRotation  # noqa: E402
from face3d_data.io import encode_image, encode_mat, read_image, read_mat, write_bytes  # noqa: E402
from face3d_data.io.images import encode_bgr  # noqa: E402
from face3d_data.morphable.testing import random_model  # noqa: E402

ANGLES = (15, 30, 45, 60, -15, -30, -45, -60)


def phases(pairs, out: str) -> dict:
    t = dict.fromkeys(("decode", "rotate", "labels", "jpeg", "mat", "write"), 0.0)
    for i, (jpg, mat) in enumerate(pairs):
        c0 = time.perf_counter()
        image, fields = read_image(jpg), read_mat(mat)
        image_rot, label_rot = ImageRotation(image), LabelRotation(fields)
        t["decode"] += time.perf_counter() - c0
        for theta in ANGLES:
            c0 = time.perf_counter()
            rot = in_plane_rotation(theta, image.shape[:2])
            turned = image_rot.warped(rot)
            c1 = time.perf_counter()
            labels = label_rot.rotate(rot, copy=False)
            c2 = time.perf_counter()
            jpeg = encode_bgr(turned, ".jpg", 95)
            c3 = time.perf_counter()
            blob = encode_mat(labels)
            c4 = time.perf_counter()
            stem = os.path.join(out, f"{i}{angle_suffix(theta)}")
            write_bytes(stem + ".jpg", jpeg)
            write_bytes(stem + ".mat", blob)
            c5 = time.perf_counter()
            for k, a, b in (("rotate", c0, c1), ("labels", c1, c2), ("jpeg", c2, c3), ("mat", c3, c4),
                            ("write", c4, c5)):
                t[k] += b - a
    return t


def shared_vs_per_angle(pairs, repeats: int = 3) -> dict:
    """ms per output (min of ``repeats``, interleaved) of the image bytes and the label bytes of
    every angle of ``pairs``, decoded beforehand: per angle with nothing shared, and shared per
    input as the stage does; and whether the bytes are equal."""
    decoded = [(read_image(jpg), read_mat(mat)) for jpg, mat in pairs]
    rotations = [in_plane_rotation(theta, (450, 450)) for theta in ANGLES]

    def per_angle_image():
        return [encode_image(rotate_image(image, rot), ".jpg", 95) for image, _ in decoded for rot in rotations]

    def shared_image():
        out = []
        for image, _ in decoded:
            image_rot = ImageRotation(image)
            out += [image_rot.jpeg(rot, 95) for rot in rotations]
        return out

    def per_angle_labels():
        return [encode_mat(rotate_label_fields(fields, rot)) for _, fields in decoded for rot in rotations]

    def shared_labels():
        out = []
        for _, fields in decoded:
            label_rot = LabelRotation(fields)
            out += [encode_mat(label_rot.rotate(rot, copy=False)) for rot in rotations]
        return out

    fns = {"per-angle image": per_angle_image, "shared image": shared_image,
           "per-angle labels": per_angle_labels, "shared labels": shared_labels}
    best, blobs = dict.fromkeys(fns, float("inf")), {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            blobs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    outputs = len(decoded) * len(rotations)
    result = {name: 1e3 * v / outputs for name, v in best.items()}
    result["same"] = (blobs["per-angle image"] == blobs["shared image"]
                      and blobs["per-angle labels"] == blobs["shared labels"])
    return result


def opencv_threads(pairs, repeats: int = 5) -> dict:
    """CPU and wall ms of one warp (450×450×3, 8 angles) with OpenCV's default thread count and
    with one thread, interleaved, min of ``repeats``."""
    import cv2

    image_rot = ImageRotation(read_image(pairs[0][0]))
    rotations = [in_plane_rotation(theta, (450, 450)) for theta in ANGLES] * 10
    default = cv2.getNumThreads()
    best = {}
    try:
        for _ in range(repeats):
            for threads in (default, 1):
                cv2.setNumThreads(threads)
                w0, c0 = time.perf_counter(), time.process_time()
                for rot in rotations:
                    image_rot.warped(rot)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                old = best.get(threads, (float("inf"), float("inf")))
                best[threads] = (min(old[0], 1e3 * wall / len(rotations)), min(old[1], 1e3 * cpu / len(rotations)))
    finally:
        cv2.setNumThreads(default)
    return {"default": default, **{f"{k}": v for k, v in best.items()}}


def mat_writers(pairs, repeats: int = 3) -> tuple[float, float, bool]:
    """ms per label file of ``encode_mat`` and of ``scipy.io.savemat`` (+ the fixed header), on the
    rotated labels of ``pairs`` (interleaved, min of ``repeats``); and whether the bytes are equal."""
    import io as _io

    import scipy.io

    labels = []
    for _, mat in pairs:
        fields = read_mat(mat)
        labels += [rotate_label_fields(fields, in_plane_rotation(theta, (450, 450))) for theta in ANGLES]

    def savemat(fields):
        buf = _io.BytesIO()
        scipy.io.savemat(buf, dict(fields), do_compression=False, oned_as="column")
        data = bytearray(buf.getvalue())
        data[:116] = encode_mat({})[:116]
        return bytes(data)

    best = {"direct": float("inf"), "savemat": float("inf")}
    for _ in range(repeats):
        for name, fn in (("direct", encode_mat), ("savemat", savemat)):
            start = time.perf_counter()
            blobs = [fn(f) for f in labels]
            best[name] = min(best[name], time.perf_counter() - start)
            if name == "direct":
                direct = blobs
            else:
                same = blobs == direct
    return 1e3 * best["direct"] / len(labels), 1e3 * best["savemat"] / len(labels), same


def reference(pairs, out: str) -> float:
    import cv2
    import scipy.io
    from skimage.transform import rotate

    start = time.perf_counter()
    for i, (jpg, mat) in enumerate(pairs):
        fields = scipy.io.loadmat(mat)
        for theta in ANGLES:
            image = cv2.imread(jpg)
            turned = (rotate(image, theta, order=1, preserve_range=True)).astype(np.uint8)
            labels = rotate_label_fields({k: v for k, v in fields.items() if not k.startswith("__")},
                                         in_plane_rotation(theta, image.shape[:2]))
            cv2.imwrite(os.path.join(out, f"r{i}_{theta}.jpg"), turned)
            scipy.io.savemat(os.path.join(out, f"r{i}_{theta}.mat"), labels)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--unique", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reference-samples", type=int, default=6)
    args = parser.parse_args(argv)
    print_machine()
    model = random_model(53215, 199, 29, seed=0, n_tex=10)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "300W_LP")
        make_dataset(root, model, args.samples, args.unique)
        pairs = list_pairs(root)
        n = min(len(pairs), 40)
        os.makedirs(os.path.join(tmp, "phases"))
        t = phases(pairs[:n], os.path.join(tmp, "phases"))
        total, outputs = sum(t.values()), n * len(ANGLES)
        print(f"where time goes (1 process, {n} inputs x {len(ANGLES)} angles): "
              f"{outputs / total:.1f} outputs/s, {1e3 * total / outputs:.2f} ms/output")
        for k, v in t.items():
            print(f"  {k:8s} {1e3 * v / outputs:7.3f} ms  {100 * v / total:5.1f} %")
        direct, savemat, same = mat_writers(pairs[:n])
        print(f"label .mat bytes, same run (min of 3): encode_mat {direct:.3f} ms/file, scipy.io.savemat "
              f"{savemat:.3f} ms/file: x{savemat / direct:.2f}; bytes equal: {same}")
        cmp = shared_vs_per_angle(pairs[:n])
        print(f"same run, in memory ({n} inputs x {len(ANGLES)} angles, min of 3): image per angle "
              f"(rotate_image + encode_image) {cmp['per-angle image']:.3f} ms/output, shared "
              f"(ImageRotation.jpeg) {cmp['shared image']:.3f}: x{cmp['per-angle image'] / cmp['shared image']:.2f}; "
              f"labels per angle (rotate_label_fields + encode_mat) {cmp['per-angle labels']:.3f}, shared "
              f"(LabelRotation) {cmp['shared labels']:.3f}: x{cmp['per-angle labels'] / cmp['shared labels']:.2f}; "
              f"bytes equal: {cmp['same']}")
        thr = opencv_threads(pairs)
        d, one = thr[str(thr["default"])], thr["1"]
        print(f"OpenCV threads, one warp (min of 5): default {thr['default']} threads {d[0]:.3f} ms wall, "
              f"{d[1]:.3f} ms CPU; 1 thread {one[0]:.3f} ms wall, {one[1]:.3f} ms CPU: CPU x{d[1] / one[1]:.2f}")
        m = min(len(pairs), args.reference_samples)
        os.makedirs(os.path.join(tmp, "reference"))
        ref = reference(pairs[:m], os.path.join(tmp, "reference"))
        ours = sum(phases(pairs[:m], os.path.join(tmp, "phases")).values())
        print(f"reference (decode per angle, skimage rotate, savemat), {m} inputs: "
              f"{1e3 * ref / (m * len(ANGLES)):.2f} ms/output; ours "
              f"{1e3 * ours / (m * len(ANGLES)):.2f} ms/output; speed-up x{ref / ours:.2f}")
        angles = len(ANGLES)
        runs = end_to_end("rotate_300wlp", {"data_root": root}, os.path.join(tmp, "out"), args.jobs,
                          small=max(1, args.samples // 4))
        seconds, done = runs["cold"]
        print(f"end to end (rotate_300wlp stage, {args.jobs} workers, loky), with start-up (fresh workers): "
              f"{done * angles} outputs in {seconds:.2f} s = {done * angles / seconds:.1f} outputs/s")
        for label, big, little, rate in (("new page-cache pages", "warm", "warm_small", "steady"),
                                         ("just-freed pages", "recycled", "recycled_small", "steady_recycled")):
            (tn, n), (ts, m), steady = runs[big], runs[little], angles * runs[rate]
            print(f"steady rate, files into {label} (warm workers: {n * angles} outputs in {tn:.2f} s against "
                  f"{m * angles} in {ts:.2f} s): {steady:.1f} outputs/s, {1e3 * args.jobs / steady:.2f} ms/output "
                  f"per core (target >= 800/s)")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
