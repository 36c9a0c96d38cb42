"""Small real stages used by the runner tests (importable by worker processes via sys.path)."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Literal

import numpy as np

from face3d_data.io import is_image_file, read_image, read_mat, save_npy, write_image
from pipelines.core import Item, Stage, StageOptions

LABELS = {"Pose_Para": (7,), "Shape_Para": (None,), "Exp_Para": (None,)}


@functools.lru_cache(maxsize=1)
def _basis() -> np.ndarray:
    """A float32 basis whose product differs in the last bits between 1 and 2 OpenBLAS threads
    (odd row counts do), so the determinism tests catch an unpinned BLAS."""
    return np.random.default_rng(0).standard_normal((40001, 199), dtype=np.float32)


class PairStage(Stage):
    """Reads ``<name>.jpg`` + ``<name>.mat`` pairs; writes a noisy flipped image and an array."""

    name = "pairs"
    summary = "test stage"

    def list_items(self, cfg, ctx):
        root = cfg["data_root"]
        items = []
        for dirpath, _, files in os.walk(root):
            for f in files:
                if is_image_file(f):
                    stem = os.path.splitext(f)[0]
                    key = os.path.relpath(os.path.join(dirpath, stem), root).replace(os.sep, "/")
                    items.append(Item(key, {"image": os.path.join(dirpath, f),
                                            "mat": os.path.join(dirpath, stem + ".mat")}))
        return items

    def process(self, item, cfg, ctx):
        image = read_image(item.inputs["image"])
        labels = read_mat(item.inputs["mat"], required=LABELS)
        time.sleep(cfg.get("sleep", 0.0))
        noise = ctx.rng.integers(0, 8, size=image.shape, dtype=np.uint8)
        out_img = ctx.path(item.key + "_out.png")
        out_npy = ctx.path(item.key + "_pose.npy")
        write_image(out_img, np.ascontiguousarray(image[:, ::-1]) // 2 + noise)
        shape = np.squeeze(labels["Shape_Para"]).astype(np.float32)
        synthesized = _basis() @ shape
        save_npy(out_npy, np.concatenate([np.squeeze(labels["Pose_Para"]) + ctx.rng.normal(size=7),
                                          synthesized]))
        return {"outputs": [ctx.relative(out_img), ctx.relative(out_npy)], "height": image.shape[0]}

    def finish(self, cfg, ctx, records):
        with open(ctx.path("finished.txt"), "w", errors="surrogateescape") as f:
            f.write("\n".join(r["key"] for r in records))

    def preview(self, record, cfg, ctx):
        return read_image(ctx.path(record["outputs"][0]))


class BatchedPairStage(PairStage):
    """PairStage that synthesises a whole batch with one matrix product (batch_size 4).

    A GEMM row's last bits depend on the batch it is computed in, so byte-identical outputs
    across jobs, backends, shards and resumes prove the runner keeps batch composition fixed.
    """

    name = "pairs_batched"
    batch_size = 4

    def process_batch(self, items, cfg, ctxs):
        results, good = [None] * len(items), []
        for i, item in enumerate(items):
            try:
                labels = read_mat(item.inputs["mat"], required=LABELS)
                image = read_image(item.inputs["image"])
                good.append((i, image, np.squeeze(labels["Shape_Para"]).astype(np.float32)))
            except Exception as exc:
                results[i] = exc
        if good:
            synthesized = np.stack([g[2] for g in good]) @ _basis().T
            for (i, image, _), row in zip(good, synthesized):
                item, ctx = items[i], ctxs[i]
                out_img = ctx.path(item.key + "_out.png")
                out_npy = ctx.path(item.key + "_pose.npy")
                write_image(out_img, np.ascontiguousarray(image[:, ::-1]) // 2)
                save_npy(out_npy, np.concatenate([ctx.rng.normal(size=7), row]))
                results[i] = {"outputs": [ctx.relative(out_img), ctx.relative(out_npy)]}
        return results


@dataclasses.dataclass(frozen=True)
class TypedOptions(StageOptions):
    """Options of :class:`TypedPairStage` (one field per key of its YAML)."""

    data_root: str | None
    model: str
    sleep: float
    scale: float
    count: int
    flip: bool
    size_jitter: list[float]
    mode: Literal["fast", "exact"]
    tags: list[str]
    levels: dict


TYPED_YAML = """\
data_root: null          # input dataset root
model: builtin           # a model file or builtin
sleep: 0.0               # seconds to sleep per item
scale: 1.5               # a float
count: 3                 # an integer
flip: true               # a flag
size_jitter: [0.9, 1.1]  # a list of floats
mode: fast               # fast or exact
tags: [a, b]             # a list of strings
levels: {}               # a mapping
"""


class TypedPairStage(PairStage):
    """PairStage with a typed options dataclass (reads ``cfg.sleep`` by attribute)."""

    name = "pairs_typed"
    Options = TypedOptions
    input_options = ("data_root",)
    asset_options = ("model",)

    def process(self, item, cfg, ctx):
        assert isinstance(cfg, TypedOptions) and isinstance(cfg.size_jitter, list)
        return super().process(item, cfg, ctx)
