"""Benchmark of the trainer: does data loading keep up with the training step, and where does a
CPU step's time go?

    python benchmarks/train.py [--samples 64] [--resolution 128] [--width 16] [--batch 8]
                               [--workers 2] [--steps 3] [--only prnet]

Rows (one run, so the ratios compare like with like):

1. ``prnet decode``: a plain loop reading the crop JPEG and the ``.npy`` label, no augmentation
   (the reference: the cheapest possible data path).
2. ``prnet dataset aug, 0 workers`` / ``N workers``: :class:`PosmapDataset` with the default
   augmentation through a DataLoader (samples/s).
3. ``prnet step``: forward + backward + Adam on CPU at ``--width`` × ``--batch`` × R², split into
   data (host → batch), forward, backward, optimizer; samples/s.
4. The ratios ``dataset / step`` (> 1: loading is not the bottleneck for this step) and
   ``dataset / decode`` (cost of augmentation).

Data: the builtin model → ``synth_300wlp --count S`` → ``posmap --resolution R`` in a temporary
folder (the real stages). Timings on a shared machine are noisy; compare the ratios.

Extension point: a task adds ``def <task>_rows(args, workdir) -> list[dict]`` and an entry in
:data:`BENCHES` (rows: ``{"row": name, "samples_per_s": x, ...}``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch


def make_posmap_data(workdir: str, samples: int, resolution: int) -> str:
    """Run synth_300wlp + posmap into ``workdir``; returns the train datalist path."""
    from pipelines.run import main as run_main

    synth, pos = os.path.join(workdir, "synth"), os.path.join(workdir, "pos")
    size = max(2 * resolution, 128)
    assert run_main(["synth_300wlp", "--out", synth, "--count", str(samples), "--quiet",
                     "--set", f"image_size={size}"]) == 0
    assert run_main(["posmap", "--data-root", synth, "--out", pos, "--resolution", str(resolution),
                     "--quiet", "--set", "splits={train: 1.0}"]) == 0
    return os.path.join(pos, "datalist", "posmap_train.txt")


def _loader_rate(dataset, batch: int, workers: int, epochs: int = 2) -> float:
    loader_kwargs = {"batch_size": batch, "num_workers": workers, "drop_last": True}
    n, start = 0, None
    for epoch in range(epochs):
        items = [(i, epoch) for i in range(len(dataset))]
        loader = torch.utils.data.DataLoader(_Indexed(dataset, items), **loader_kwargs)
        for b in loader:
            if start is None:       # exclude worker start-up and the first batch
                start = time.perf_counter()
                continue
            n += b["image"].shape[0]
    return n / max(time.perf_counter() - start, 1e-9)


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, dataset, items):
        self.dataset, self.items = dataset, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, j):
        return self.dataset[self.items[j]]


def prnet_rows(args, workdir: str) -> list[dict]:
    from face3d_data.io import load_npy, read_image
    from face3d_data.train.posmap_data import PosmapDataset
    from face3d_data.train.prnet import PRNetTask

    datalist = make_posmap_data(workdir, args.samples, args.resolution)
    plain = PosmapDataset(datalist, args.resolution)
    start = time.perf_counter()
    for _ in range(2):
        for img, lab in zip(plain.images, plain.labels):
            read_image(img)
            load_npy(lab)
    decode = 2 * len(plain) / (time.perf_counter() - start)
    rows = [{"row": "prnet decode (jpeg + npy, no augmentation)", "samples_per_s": decode}]
    aug = PosmapDataset(datalist, args.resolution, augment=True, seed=0)
    rates = {}
    for workers in sorted({0, args.workers}):
        rates[workers] = _loader_rate(aug, args.batch, workers)
        rows.append({"row": f"prnet dataset with augmentation, {workers} workers", "samples_per_s": rates[workers]})

    from face3d_data.train.task import COMMON_DEFAULTS

    cfg = {**COMMON_DEFAULTS, "datalist": datalist, "width": args.width, "bn_momentum": 0.1, "loss": "paper"}
    task = PRNetTask(cfg)
    model = task.build_model().train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    loader = torch.utils.data.DataLoader(_Indexed(aug, [(i, 0) for i in range(len(aug))]),
                                         batch_size=args.batch, drop_last=True)
    batches = iter(loader)
    times = {"data": [], "forward": [], "backward": [], "optimizer": []}
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        total, _ = task.loss(model, batch)
        t2 = time.perf_counter()
        total.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if i:  # the first step warms up allocators
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[k].append(v)
    step = sum(np.median(v) for v in times.values())
    compute = step - np.median(times["data"])
    row = {"row": f"prnet step cpu width {args.width} batch {args.batch} x {args.resolution}^2",
           "samples_per_s": args.batch / step, "s_per_step": step,
           **{f"{k}_s": float(np.median(v)) for k, v in times.items()}}
    rows.append(row)
    best = max(rates.values())
    rows.append({"row": "ratio dataset (best workers) / training step compute", "ratio": best / (args.batch / compute)})
    rows.append({"row": "ratio dataset (best workers) / plain decode", "ratio": best / decode})
    return rows


#: task name -> function(args, workdir) -> rows. R-Net / params rows are added here by their task.
BENCHES = {"prnet": prnet_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    for name in args.only or BENCHES:
        with tempfile.TemporaryDirectory(prefix=f"bench_train_{name}_") as workdir:
            for row in BENCHES[name](args, workdir):
                label = row.pop("row")
                print(f"{label:70s} " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()))


if __name__ == "__main__":
    main()
