"""Benchmark of the trainer: does data loading keep up with the training step, and where does a
CPU step's time go? One section per task (prnet, rnet, params), each in one run:

    python benchmarks/train.py [--samples 64] [--resolution 128] [--width 16] [--batch 8]
                               [--workers 2] [--steps 3] [--only prnet|rnet|params]
                               [--rnet-depth 18] [--rnet-size 224] [--rnet-batch 4]
                               [--params-backbone mobilenet_v1] [--params-size 120] [--params-batch 16]

Rows of a section (one run, so the ratios compare like with like):

1. ``<task> decode``: a plain loop reading what one sample is made of, with no alignment and no
   augmentation (prnet: crop JPEG + ``.npy`` label; rnet: JPEG + skin-mask PNG + landmark ``.txt``;
   params: JPEG + ``.mat`` labels) — the cheapest possible data path.
2. ``<task> dataset with augmentation, 0 workers`` / ``N workers``: the task's training dataset
   (the real one, with its default augmentation) through a DataLoader (samples/s).
3. ``<task> step``: forward + backward + Adam on CPU at the sizes given, split into data (next
   batch), network forward, the rest of the loss (rnet: the face model, SH lighting and losses;
   ``render`` the rasteriser + interpolation alone), backward, optimizer; samples/s.
4. The ratios ``dataset / step compute`` (> 1: loading is not the bottleneck for this step) and
   ``dataset / decode`` (cost of alignment and augmentation).

Data: the builtin model -> ``synth_300wlp --count S`` (the real stage) in a temporary folder; then
prnet: ``posmap --resolution R``; rnet: ``data_preparation``'s layout written from the synthetic
labels (image, 68 landmarks, the library's skin mask, the three lists); params: the 300W-LP folder
itself. Timings on a shared machine are noisy; compare the ratios, and read them with the machine
line printed first (cores, load average, BLAS and torch threads).

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
from _machine import print_machine


def make_synth(workdir: str, samples: int, image_size: int) -> str:
    """Run synth_300wlp (embedded model) into ``workdir/synth``; returns that folder."""
    from pipelines.run import main as run_main

    synth = os.path.join(workdir, "synth")
    if not os.path.isdir(synth):
        assert run_main(["synth_300wlp", "--out", synth, "--count", str(samples), "--quiet",
                         "--set", f"image_size={image_size}"]) == 0
    return synth


def make_posmap_data(workdir: str, samples: int, resolution: int) -> str:
    """Run synth_300wlp + posmap into ``workdir``; returns the train datalist path."""
    from pipelines.run import main as run_main

    synth, pos = make_synth(workdir, samples, max(2 * resolution, 256)), os.path.join(workdir, "pos")
    assert run_main(["posmap", "--data-root", synth, "--out", pos, "--resolution", str(resolution),
                     "--quiet", "--set", "splits={train: 1.0}"]) == 0
    return os.path.join(pos, "datalist", "posmap_train.txt")


def make_rnet_data(workdir: str, samples: int) -> str:
    """data_preparation's layout (``<root>/datalist/train/{images,landmarks,masks}.txt``) built from
    synthetic faces: the image, its 68 labelled landmarks (canonical frame) and the library's skin
    mask. Returns the data root."""
    from face3d_data.io import read_image, write_datalist, write_image, write_landmarks_txt
    from face3d_data.skin import skin_mask
    from face3d_data.w300lp import find_samples, read_labels

    synth, root = make_synth(workdir, samples, 256), os.path.join(workdir, "rnet")
    rows = []
    for sample in find_samples(synth):
        name = os.path.basename(sample.key)
        image = read_image(sample.image_path)
        paths = (os.path.join(root, "faces", f"{name}.png"), os.path.join(root, "faces", "landmarks", f"{name}.txt"),
                 os.path.join(root, "faces", "mask", f"{name}.png"))
        write_image(paths[0], image)
        write_landmarks_txt(paths[1], read_labels(sample.mat_path).pt2d)
        write_image(paths[2], np.repeat(skin_mask(image)[..., None], 3, -1))
        rows.append(paths)
    for i, kind in enumerate(("images", "landmarks", "masks")):
        write_datalist(os.path.join(root, "datalist", "train", f"{kind}.txt"), [(r[i],) for r in rows], root)
    return root


def task_config(task: str, **overrides) -> dict:
    """The CLI's resolved defaults of ``task`` (train_common.yaml + train_<task>.yaml) with overrides."""
    from pipelines.train import task_options

    return {**{k: o.default for k, o in task_options(task).items()}, **overrides}


def _loader_rate(dataset, batch: int, workers: int, epochs: int = 2) -> float:
    """samples/s of ``epochs`` passes through one DataLoader (worker start-up and the first batch
    excluded)."""
    items = [(i, epoch) for epoch in range(epochs) for i in range(len(dataset))]
    loader = torch.utils.data.DataLoader(_Indexed(dataset, items), batch_size=batch, num_workers=workers,
                                         drop_last=True)
    n, start = 0, None
    for b in loader:
        if start is None:
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


class _Timed(torch.nn.Module):
    """Wraps the network so the time of its forward calls is known inside ``task.loss``."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seconds = net, 0.0

    def forward(self, x):
        t = time.perf_counter()
        out = self.net(x)
        self.seconds += time.perf_counter() - t
        return out


def time_steps(task, model, batches, steps: int, render_clock=None) -> dict:
    """Median seconds per phase of ``steps`` training steps (after one warm-up step) on CPU."""
    timed = _Timed(model)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    phases = ("data", "forward", "loss_rest", "render", "backward", "optimizer")
    times = {k: [] for k in phases}
    for i in range(steps + 1):
        timed.seconds = 0.0
        if render_clock is not None:
            render_clock["seconds"] = 0.0
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        total, _ = task.loss(timed, batch)
        t2 = time.perf_counter()
        total.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        render = render_clock["seconds"] if render_clock is not None else 0.0
        if i:  # the first step warms up allocators
            for k, v in zip(phases, (t1 - t0, timed.seconds, t2 - t1 - timed.seconds - render, render,
                                     t3 - t2, t4 - t3)):
                times[k].append(v)
    med = {k: float(np.median(v)) for k, v in times.items()}
    if render_clock is None:
        med.pop("render")
    return med


def _step_rows(name: str, label: str, batch: int, med: dict, rates: dict, decode: float) -> list[dict]:
    step = sum(med.values())
    compute = step - med["data"]
    rows = [{"row": f"{name} step cpu {label}", "samples_per_s": batch / step, "s_per_step": step,
             **{f"{k}_s": v for k, v in med.items()}}]
    best = max(rates.values())
    rows.append({"row": f"{name} ratio dataset (best workers) / training step compute",
                 "ratio": best / (batch / compute)})
    rows.append({"row": f"{name} ratio dataset (best workers) / plain decode", "ratio": best / decode})
    return rows


def _dataset_rows(name: str, dataset, batch: int, workers: int) -> tuple[list[dict], dict]:
    rows, rates = [], {}
    for w in sorted({0, workers}):
        rates[w] = _loader_rate(dataset, batch, w)
        rows.append({"row": f"{name} dataset with augmentation, {w} workers", "samples_per_s": rates[w]})
    return rows, rates


def _batches(dataset, batch: int):
    loader = torch.utils.data.DataLoader(_Indexed(dataset, [(i, 0) for i in range(len(dataset))]),
                                         batch_size=batch, drop_last=True)
    while True:
        yield from loader


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
    task = PRNetTask(task_config("prnet", datalist=datalist, width=args.width))
    aug, _ = task.datasets()
    more, rates = _dataset_rows("prnet", aug, args.batch, args.workers)
    model = task.build_model().train()
    med = time_steps(task, model, _batches(aug, args.batch), args.steps)
    label = f"width {args.width} batch {args.batch} x {args.resolution}^2"
    return rows + more + _step_rows("prnet", label, args.batch, med, rates, decode)


def rnet_rows(args, workdir: str) -> list[dict]:
    import face3d_data.train.rnet as rnet_module
    from face3d_data.io import read_image
    from face3d_data.io.landmarks import read_landmarks
    from face3d_data.train.renderer import FaceRenderer
    from face3d_data.train.rnet import RNetTask

    root = make_rnet_data(workdir, args.samples)
    task = RNetTask(task_config("rnet", data_root=root, val_mode="", depth=args.rnet_depth,
                                image_size=args.rnet_size, renderer="cpu"))
    task.check_config()
    aug, _ = task.datasets()
    start = time.perf_counter()
    for _ in range(2):
        for img, lm, mask in zip(aug.images, aug.landmark_files, aug.masks):
            read_image(img)
            read_image(mask)
            read_landmarks(lm)
    decode = 2 * len(aug) / (time.perf_counter() - start)
    rows = [{"row": "rnet decode (image + mask png + landmarks txt, no alignment/augmentation)",
             "samples_per_s": decode}]
    more, rates = _dataset_rows("rnet", aug, args.rnet_batch, args.workers)
    clock = {"seconds": 0.0}

    class TimedRenderer(FaceRenderer):
        def __call__(self, *a, **k):
            t = time.perf_counter()
            out = super().__call__(*a, **k)
            clock["seconds"] += time.perf_counter() - t
            return out

    model = task.build_model().train()
    original = rnet_module.FaceRenderer
    rnet_module.FaceRenderer = TimedRenderer
    try:
        med = time_steps(task, model, _batches(aug, args.rnet_batch), args.steps, clock)
    finally:
        rnet_module.FaceRenderer = original
    face = task.face_model()
    label = (f"resnet{args.rnet_depth} batch {args.rnet_batch} x {args.rnet_size}^2, {face.n_coefficients} coeffs, "
             f"{face.n_vertices} vertices, renderer cpu")
    return rows + more + _step_rows("rnet", label, args.rnet_batch, med, rates, decode)


def params_rows(args, workdir: str) -> list[dict]:
    from face3d_data.io import read_image
    from face3d_data.train.params import ParamsTask
    from face3d_data.w300lp import read_labels

    synth = make_synth(workdir, args.samples, 256)
    task = ParamsTask(task_config("params", data_root=synth, val_list="", backbone=args.params_backbone,
                                  input_size=args.params_size))
    task.check_config()
    aug, _ = task.datasets()
    start = time.perf_counter()
    for _ in range(2):
        for img, mat in aug.pairs:
            read_image(img)
            read_labels(mat)
    decode = 2 * len(aug) / (time.perf_counter() - start)
    rows = [{"row": "params decode (jpeg + mat, no crop/augmentation)", "samples_per_s": decode}]
    more, rates = _dataset_rows("params", aug, args.params_batch, args.workers)
    model = task.build_model().train()
    med = time_steps(task, model, _batches(aug, args.params_batch), args.steps)
    label = f"{args.params_backbone} batch {args.params_batch} x {args.params_size}^2, loss {task.cfg['loss']}"
    return rows + more + _step_rows("params", label, args.params_batch, med, rates, decode)


#: task name -> function(args, workdir) -> rows.
BENCHES = {"prnet": prnet_rows, "rnet": rnet_rows, "params": params_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rnet-depth", type=int, default=18)
    parser.add_argument("--rnet-size", type=int, default=224)
    parser.add_argument("--rnet-batch", type=int, default=4)
    parser.add_argument("--params-backbone", default="mobilenet_v1")
    parser.add_argument("--params-size", type=int, default=120)
    parser.add_argument("--params-batch", type=int, default=16)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args()
    print_machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="bench_train_") as workdir:  # one synth set for every task
        for name in args.only or BENCHES:
            for row in BENCHES[name](args, workdir):
                label = row.pop("row")
                print(f"{label:70s} " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()))


if __name__ == "__main__":
    main()
