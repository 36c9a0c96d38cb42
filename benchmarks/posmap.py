"""Benchmark of the ``posmap`` stage on generated data (53k-vertex, 199+29-mode random model).

    python benchmarks/posmap.py [--samples 1200] [--jobs 2] [--unique 16] [--views 1]

1. Generates ``--unique`` synthetic 450×450 JPEG images with the random BFM-sized fixture
   (``face3d_data.morphable.testing.random_model(53215, 199, 29)``) and lays them out as
   ``--samples`` 300W-LP-format pairs. Labels are unique per sample by default (``--views 1``:
   nothing to share); ``--views 8`` gives groups of 8 consecutive views sharing
   ``Shape_Para``/``Exp_Para``, like 300W-LP's views or rotated copies (evaluated once per batch).
2. Where time goes, one process, single-threaded BLAS (as in the stage's workers), per sample:
   jpeg (decode), mat (label read), synthesis (vertices as the stage computes them: one basis
   product per group of ``--synthesis-group`` samples (the stage's ``synthesis_group``, default
   8), the groups the merge probe vouches for taken from one product per runner batch of
   ``batch_size``, the rest streamed; + projection), crop (box +
   image warp), raster (UV position map), encode (JPEG crop, PNG picture), write (atomic file
   writes; the .npy straight from the array).
   Same run, interleaved: the synthesis as before (one full basis pass per group of 8), streamed
   in tiles (groups of 8), the default (merged where exact) and groups of 64 (the opt-in), with
   their ratios and whether each is bit-equal to before.
3. A straightforward reference in the same run (face3d's approach: float64 vertices, the UV mesh
   re-rasterised for every sample with ``render_uv``, ``skimage.transform.warp`` for the crop),
   and the ratio.
4. End to end: the real stage through the runner with ``--jobs`` workers (loky), samples/s of a
   cold run (fresh workers, the model loaded in every process), and the steady rate
   (N - n) / (t_N - t_n) of two warm runs (same workers, model already loaded), which is what a
   122,450-sample 300W-LP run sees (``benchmarks/_runs.py``); and what writing one position map
   costs the kernel in new page-cache pages against just-freed ones.

Timings on a shared machine are noisy; compare the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import print_machine  # noqa: E402
from _runs import end_to_end, page_cache_cost  # noqa: E402

from face3d_data.io import encode_image, read_image, read_mat, save_npy, write_bytes, write_image, write_mat  # noqa: E402
from face3d_data.morphable.testing import random_model  # noqa: E402
from face3d_data.posmap import (  # noqa: E402
    apply_affine,
    build_uv_assets,
    crop_image,
    crop_matrix,
    crop_vertices,
    landmark_crop_box,
    preview_image,
    projection_affine,
    render_position_map,
)
from face3d_data.w300lp.pose import project  # noqa: E402


def make_dataset(root: str, model, samples: int, unique: int, seed: int = 0,
                 views: int = 1) -> float:
    """Write ``samples`` 300W-LP-layout pairs; returns seconds.

    ``unique`` distinct renders supply the images. Labels are unique per identity group of
    ``views`` consecutive samples (``views=1``: every sample's ``Shape_Para``/``Exp_Para`` differ,
    so no per-identity reuse can help; larger: the views of one face share them, like 300W-LP's
    ``_k`` views or rotated copies). Each group's coefficients are its render's plus 5 % of the
    prior std of noise, small enough to keep the face on the image.
    """
    from face3d_data.w300lp.synth import synthesize

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    renders = [synthesize(model, rng, 450, yaw_range_deg=70.0) for _ in range(unique)]
    subsets = ("AFW", "HELEN", "IBUG", "LFPW")
    images: dict[int, str] = {}
    labels = None
    for i in range(samples):
        group, view = divmod(i, max(1, views))
        s = renders[group % unique]
        subset = subsets[group % 4]
        stem = os.path.join(root, subset, f"{subset}_{group}_1_{view}")
        if group % unique not in images:
            write_image(stem + ".jpg", s.image)
            images[group % unique] = stem + ".jpg"
        else:
            os.makedirs(os.path.dirname(stem), exist_ok=True)
            shutil.copyfile(images[group % unique], stem + ".jpg")
        if view == 0:
            labels = dict(s.labels)
            for name, std in (("Shape_Para", model.shape_std), ("Exp_Para", model.exp_std)):
                para = np.asarray(labels[name], np.float64)
                noise = rng.standard_normal(para.shape) * 0.05 * np.asarray(std).reshape(-1, 1)[:len(para)]
                labels[name] = (para + noise).astype(para.dtype)
        write_mat(stem + ".mat", labels)
    return time.perf_counter() - start


def list_pairs(root: str) -> list[tuple[str, str]]:
    pairs = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".jpg"):
                stem = os.path.join(dirpath, f[:-4])
                pairs.append((stem + ".jpg", stem + ".mat"))
    return sorted(pairs)


def phases(pairs, model, assets, out: str, rng, png_every: int = 50, group: int = 8) -> dict:
    """Per-phase seconds of what the stage does, summed over ``pairs``, BLAS single-threaded:
    samples are synthesised per runner batch of the stage's ``batch_size`` (groups of
    ``group``, one product each, the basis streamed once per batch), the rest per sample.

    The ``_posmap.png`` picture is encoded for one sample in ``png_every``, as the stage's default.
    """
    from threadpoolctl import threadpool_limits

    from face3d_data.posmap import batch_vertices
    from face3d_data.w300lp import model_coefficients as label_coefficients
    from pipelines.stages.posmap import PosmapStage

    t = dict.fromkeys(("jpeg", "mat", "synthesis", "crop", "raster", "encode", "write"), 0.0)
    res = assets.resolution
    size = PosmapStage.batch_size
    batch_vertex: dict[int, np.ndarray] = {}
    with threadpool_limits(limits=1):
        for i, (jpg, mat) in enumerate(pairs):
            c0 = time.perf_counter()
            image = read_image(jpg)
            c1 = time.perf_counter()
            fields = read_mat(mat)
            c2 = time.perf_counter()
            if i % size == 0:  # the stage synthesises its whole runner batch at once
                batch = pairs[i:i + size]
                coefficients = [label_coefficients(model, fields if j == 0 else read_mat(m), m)
                                for j, (_, m) in enumerate(batch)]
                found = batch_vertices(model, coefficients, group=group)
                batch_vertex = {i + j: v for j, v in enumerate(found)}
            vertices = batch_vertex[i]
            projection = projection_affine(fields["Pose_Para"], image.shape[:2])
            c3 = time.perf_counter()
            box = landmark_crop_box(apply_affine(vertices[model.landmarks], projection), rng=rng)
            matrix = crop_matrix(box, res)
            crop = crop_image(image, matrix, res)
            c4 = time.perf_counter()
            posmap = render_position_map(crop_vertices(vertices, matrix, projection), assets)
            c5 = time.perf_counter()
            blobs = {"c.jpg": encode_image(crop, ".jpg", 95)}
            if png_every and i % png_every == 0:
                blobs["p.png"] = encode_image(preview_image(posmap), ".png")
            c6 = time.perf_counter()
            for name, data in blobs.items():
                write_bytes(os.path.join(out, f"{i}_{name}"), data)
            save_npy(os.path.join(out, f"{i}_p.npy"), posmap)
            c7 = time.perf_counter()
            for k, a, b in (("jpeg", c0, c1), ("mat", c1, c2), ("synthesis", c2, c3), ("crop", c3, c4),
                            ("raster", c4, c5), ("encode", c5, c6), ("write", c6, c7)):
                t[k] += b - a
    return t


def synthesis_ratio(pairs, model, repeats: int = 3) -> dict:
    """ms/sample of the stage's synthesis over ``pairs`` in runner batches (interleaved, min of
    ``repeats``): "before" (one basis pass per group of 8), "streamed" (groups of 8, the basis read
    once per batch in tiles), "default" (what the stage does: the groups the merge probe vouches for
    from one product per batch, the rest streamed) and "group 64" (the opt-in); plus whether
    streamed and default are bit-equal to before, and the share of groups taken from a merged product."""
    from threadpoolctl import threadpool_limits

    from face3d_data.morphable import streamed as streaming
    from face3d_data.posmap import batch_vertices
    from face3d_data.w300lp import model_coefficients as label_coefficients
    from pipelines.stages.posmap import PosmapStage

    size = PosmapStage.batch_size
    coefficients = [label_coefficients(model, read_mat(m), m) for _, m in pairs]
    batches = [coefficients[i:i + size] for i in range(0, len(coefficients), size)]
    original = streaming.grouped_vertices
    block, mean = model.basis_matrix, model.mean.reshape(-1)
    plain = lambda m, groups: [streaming._one_product(g, block, mean)  # noqa: E731
                               .reshape(len(g), m.n_vertices, 3) for g in groups]
    tiles = lambda m, groups: [f.reshape(len(f), m.n_vertices, 3)  # noqa: E731
                               for f in streaming._separate(groups, block, mean)]
    variants = {"before": (plain, 8), "streamed": (tiles, 8), "default": (original, 8),
                "group 64": (original, 64)}
    best = dict.fromkeys(variants, float("inf"))
    results = {}
    with threadpool_limits(limits=1):
        for _ in range(repeats):
            for name, (function, group) in variants.items():
                streaming.grouped_vertices = function
                try:
                    start = time.perf_counter()
                    results[name] = [v for b in batches for v in batch_vertices(model, b, group=group)]
                    best[name] = min(best[name], time.perf_counter() - start)
                finally:
                    streaming.grouped_vertices = original
        sizes = [[8] * (len(b) // 8) + ([len(b) % 8] if len(b) % 8 else []) for b in batches]
        merged = [e for s in sizes for e in (streaming.merging_is_exact(block, s) if len(s) > 1 else [False])]
    out = {name: 1e3 * seconds / len(pairs) for name, seconds in best.items()}
    for name in ("streamed", "default", "group 64"):
        out[f"{name} bit-equal"] = all(np.array_equal(a, b) for a, b in zip(results[name], results["before"]))
    out["merged share"] = sum(merged) / max(1, len(merged))
    return out


def reference(pairs, model, out: str, res: int, rng) -> float:
    """Seconds for the straightforward path (face3d/PRNet generator style) over ``pairs``."""
    import cv2
    from skimage.transform import SimilarityTransform, warp

    from face3d_data.posmap import uv_to_texels
    from face3d_data.render.maps import render_uv

    uv = uv_to_texels(model.uv, res)
    start = time.perf_counter()
    for i, (jpg, mat) in enumerate(pairs):
        image = read_image(jpg) / 255.0
        fields = read_mat(mat)
        shape = np.asarray(fields["Shape_Para"], np.float64)
        exp = np.asarray(fields["Exp_Para"], np.float64)
        vertices = (model.mean.astype(np.float64).reshape(-1)
                    + model.shape_basis.reshape(-1, model.n_shape) @ shape[:, 0]
                    + model.exp_basis.reshape(-1, model.n_exp) @ exp[:, 0]).reshape(-1, 3)
        projected = project(vertices, fields["Pose_Para"], image.shape[:2])
        box = landmark_crop_box(projected[model.landmarks], rng=rng)
        k = (res - 1) / box.size
        tform = SimilarityTransform(scale=k, translation=(res - 1) / 2 - k * box.center)
        crop = warp(image, tform.inverse, output_shape=(res, res))
        pos = projected.copy()
        pos[:, :2] = pos[:, :2] * k + tform.translation
        pos[:, 2] = (pos[:, 2] - pos[:, 2].min()) * k
        posmap = render_uv(uv, model.triangles, pos.astype(np.float32), res, res)
        cv2.imwrite(os.path.join(out, f"r{i}.jpg"), (crop[..., ::-1] * 255).astype(np.uint8))
        np.save(os.path.join(out, f"r{i}.npy"), posmap)
        cv2.imwrite(os.path.join(out, f"r{i}_posmap.jpg"),
                    np.clip(posmap / posmap.max() * 255, 0, 255).astype(np.uint8))
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--unique", type=int, default=16, help="distinct rendered images")
    parser.add_argument("--views", type=int, default=1,
                        help="consecutive samples sharing Shape_Para/Exp_Para (1 = all labels unique)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reference-samples", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--synthesis-group", type=int, default=8,
                        help="the stage's synthesis_group (8: bytes as before; 64: faster, not bit-equal)")
    args = parser.parse_args(argv)

    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        fresh, recycled = page_cache_cost(os.path.join(tmp, "page_cache"), 4 * 3 * args.resolution ** 2 + 128)
    print(f"page cache, writing one {args.resolution}² float32 .npy: {fresh:.2f} ms into new pages, "
          f"{recycled:.2f} ms into just-freed pages (x{fresh / max(recycled, 1e-9):.1f})")
    t0 = time.perf_counter()
    model = random_model(53215, 199, 29, seed=0, n_tex=10)
    print(f"model: {model.n_vertices} vertices, {len(model.triangles)} triangles, "
          f"{model.n_shape}+{model.n_exp} modes ({time.perf_counter() - t0:.1f} s to build)")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "300W_LP")
        gen = make_dataset(root, model, args.samples, args.unique, views=args.views)
        print(f"generated {args.samples} samples ({args.unique} distinct images; labels shared by "
              f"{args.views} consecutive view(s)) in {gen:.1f} s")
        pairs = list_pairs(root)
        t = time.perf_counter()
        assets = build_uv_assets(model, args.resolution)
        print(f"UV assets at {args.resolution}: {time.perf_counter() - t:.3f} s (once per worker)")

        rng = np.random.default_rng(0)
        n = min(len(pairs), 200)
        os.makedirs(os.path.join(tmp, "phases"))
        cpu = time.process_time()
        t = phases(pairs[:n], model, assets, os.path.join(tmp, "phases"), rng, group=args.synthesis_group)
        cpu = time.process_time() - cpu
        total = sum(t.values())
        from pipelines.stages.posmap import PosmapStage

        print(f"\nwhere time goes (1 process, BLAS 1 thread, {n} samples, runner batches of "
              f"{PosmapStage.batch_size}, one basis product per {args.synthesis_group}): "
              f"{n / total:.1f} samples/s, {1e3 * total / n:.2f} ms/sample wall, "
              f"{1e3 * cpu / n:.2f} ms/sample CPU")
        for k, v in t.items():
            print(f"  {k:10s} {1e3 * v / n:7.2f} ms  {100 * v / total:5.1f} %")
        syn = synthesis_ratio(pairs[:n], model)
        print(f"synthesis, same run (min of 3, interleaved), ms/sample: before (one basis pass per "
              f"group of 8) {syn['before']:.2f}; streamed in tiles, groups of 8 {syn['streamed']:.2f} "
              f"(x{syn['before'] / syn['streamed']:.2f}, bit-equal: {syn['streamed bit-equal']}); "
              f"default (merged where the probe vouches: {100 * syn['merged share']:.0f} % of groups) "
              f"{syn['default']:.2f} (x{syn['before'] / syn['default']:.2f}, bit-equal: "
              f"{syn['default bit-equal']}); group 64 {syn['group 64']:.2f} "
              f"(x{syn['before'] / syn['group 64']:.2f}, bit-equal: {syn['group 64 bit-equal']})")

        m = min(len(pairs), args.reference_samples)
        os.makedirs(os.path.join(tmp, "reference"))
        ref = reference(pairs[:m], model, os.path.join(tmp, "reference"), args.resolution, rng)
        ours = phases(pairs[:m], model, assets, os.path.join(tmp, "phases"), rng, group=args.synthesis_group)
        ours_total = sum(ours.values())
        print(f"\nreference (float64 vertices, UV re-rasterised per sample, skimage warp), "
              f"{m} samples: {1e3 * ref / m:.2f} ms/sample; ours {1e3 * ours_total / m:.2f} "
              f"ms/sample; speed-up x{ref / ours_total:.2f}")

        model_path = os.path.join(tmp, "model.npz")
        model.save(model_path)
        explicit = {"data_root": root, "model": model_path, "synthesis_group": args.synthesis_group}
        small = min(len(pairs) // 3, 2 * PosmapStage.batch_size * args.jobs)
        runs = end_to_end("posmap", explicit, os.path.join(tmp, "out"), args.jobs, small)
        seconds, processed = runs["cold"]
        print(f"\nend to end (posmap stage, {args.jobs} workers, loky, synthesis_group "
              f"{args.synthesis_group}), with start-up (fresh workers, model loaded in every process): "
              f"{processed} samples in {seconds:.2f} s = {processed / seconds:.1f} samples/s")
        for label, big, little, rate in (("new page-cache pages", "warm", "warm_small", "steady"),
                                         ("just-freed pages", "recycled", "recycled_small", "steady_recycled")):
            (tn, n), (ts, m), steady = runs[big], runs[little], runs[rate]
            print(f"steady rate, files into {label} (warm workers: {n} samples in {tn:.2f} s against {m} "
                  f"in {ts:.2f} s): {steady:.1f} samples/s, {1e3 * args.jobs / steady:.2f} ms/sample per core "
                  f"(target >= 400/s); the 122,450-sample 300W-LP: {122450 / steady / 60:.1f} min")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
