"""The ``params`` training task: a 3DDFA / Richardson-style regressor of the 300W-LP label vector.

A backbone (MobileNet-v1 by default, as 3DDFA; or a ResNet, :mod:`face3d_data.train.backbones`)
and a linear head predict the whitened label vector of :mod:`face3d_data.train.params_data` from a
face crop; whitening statistics are computed from the training list (un-jittered crops) and stored
in every checkpoint. Losses ``wpdc`` / ``vdc`` / ``pdc`` (:mod:`face3d_data.train.params_losses`).
Evaluation: 68-point NME of the landmarks projected from the predicted parameters (normaliser
√(w·h) of the ground-truth 68-point box, by |yaw| bucket 0-30 / 30-60 / 60-90 and their balanced
mean) and the mean per-vertex 3-D distance (z aligned by the mean offset) over the whole mesh.
Options: ``pipelines/configs/train_params.yaml``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from face3d_data.errors import ConfigError
from face3d_data.train.backbones import build_backbone, set_bn_momentum
from face3d_data.train.params_data import ParamsDataset
from face3d_data.train.params_losses import ParamSpace
from face3d_data.train.rnet import box_normaliser, load_face_model
from face3d_data.train.task import Task, sample_seed

__all__ = ["ParamsNet", "ParamsTask"]

LOSSES = ("wpdc", "vdc", "pdc")
YAW_BUCKETS = ((0, 30), (30, 60), (60, 90))


class ParamsNet(nn.Module):
    """Backbone + linear head of ``n_params`` whitened outputs (head initialised to 0 = the mean label)."""

    def __init__(self, backbone: str, n_params: int):
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.head = nn.Linear(self.backbone.out_features, int(n_params))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        return self.head(self.backbone(x))


class ParamsTask(Task):
    """3DDFA-style parameter regression on 300W-LP-format data (module docs)."""

    name = "params"
    best_metric = "nme_2d"
    best_lower = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._stats: tuple[np.ndarray, np.ndarray] | None = None
        self._space: ParamSpace | None = None

    def check_config(self) -> None:
        from face3d_data.w300lp import check_data_root
        c = self.cfg
        check_data_root(c["data_root"])
        if c["loss"] not in LOSSES:
            raise ConfigError(f"loss: expected one of {LOSSES}, got {c['loss']!r}")
        for key in ("input_size", "n_random"):
            if int(c[key]) <= 0:
                raise ConfigError(f"{key}: expected > 0, got {c[key]}")
        if not float(c["crop_scale"]) > 0:
            raise ConfigError(f"crop_scale: expected > 0, got {c['crop_scale']}")
        build_backbone(c["backbone"])       # validates the name
        if not 0 < float(c.get("bn_momentum", 0.1)) <= 1:
            raise ConfigError(f"bn_momentum: expected a number in (0, 1], got {c.get('bn_momentum')!r}")
        self.sizes()

    def sizes(self) -> tuple[int, int]:
        model = load_face_model(self.cfg["model"])
        return min(int(self.cfg["n_shape"]), model.n_shape), min(int(self.cfg["n_exp"]), model.n_exp)

    def _dataset(self, list_name: str, augment: bool) -> ParamsDataset:
        c = self.cfg
        model = load_face_model(c["model"])
        ks, ke = self.sizes()
        pairs = ParamsDataset.pairs_from(c["data_root"], list_name)
        if c["limit"]:
            pairs = pairs[:int(c["limit"])]
        return ParamsDataset(c["data_root"], pairs, model.subset(model.landmarks), ks, ke, int(c["input_size"]),
                             float(c["crop_scale"]), augment=augment, seed=int(c["seed"]),
                             jitter_shift=float(c["jitter_shift"]), jitter_scale=float(c["jitter_scale"]))

    def _train_list(self) -> str:
        c = self.cfg
        if c["train_list"]:
            return c["train_list"]
        return "train.txt" if os.path.isfile(os.path.join(c["data_root"], "train.txt")) else "*"

    def datasets(self):
        c = self.cfg
        train = self._dataset(self._train_list(), augment=bool(c["augment"]))
        if self._stats is None:
            self._stats = train.label_statistics()
        val = None
        if c["val_list"] and os.path.isfile(os.path.join(c["data_root"], c["val_list"])):
            val = self._dataset(c["val_list"], augment=False)
        return train, val

    def eval_dataset(self, datalist):
        c = self.cfg
        name = datalist or c["val_list"] or self._train_list()
        return self._dataset(name, augment=False)

    def data_files(self):
        c = self.cfg
        files = []
        for name in (self._train_list(), c["val_list"]):
            if name and name != "*":
                path = name if os.path.isabs(name) else os.path.join(c["data_root"], name)
                if os.path.isfile(path):
                    files.append(path)
        return files

    def space(self, device=None) -> ParamSpace:
        if self._space is None:
            if self._stats is None:
                raise ConfigError("params: whitening statistics are missing (not a params checkpoint?)")
            ks, ke = self.sizes()
            self._space = ParamSpace(load_face_model(self.cfg["model"]), ks, ke, *self._stats,
                                     int(self.cfg["input_size"]))
        if device is not None:
            self._space = self._space.to(device)
        return self._space

    def build_model(self):
        ks, ke = self.sizes()
        return set_bn_momentum(ParamsNet(self.cfg["backbone"], 7 + ks + ke), float(self.cfg.get("bn_momentum", 0.1)))

    def _generator(self, keys) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(sample_seed(int(self.cfg["seed"]), 0, "\x00".join(keys)))
        return g

    def loss(self, model, batch):
        space = self.space(batch["image"].device)
        pred = model(batch["image"]).float()
        gt = batch["params"]
        index = space.sample_index(int(self.cfg["n_random"]), self._generator(batch["key"]))
        chosen = self.cfg["loss"]
        terms = {"pdc": lambda: space.pdc(pred, gt), "vdc": lambda: space.vdc(pred, gt, index),
                 "wpdc": lambda: space.wpdc(pred, gt, index)}
        parts = {}
        for name, fn in terms.items():
            if name == chosen:
                parts[name] = fn()
            elif name != "wpdc":                         # logged, not optimised
                with torch.no_grad():
                    parts[name] = fn()
        return parts[chosen], {k: v.detach() for k, v in parts.items()}

    def _predict(self, model, batch):
        space = self.space(batch["image"].device)
        return space.unwhiten(model(batch["image"]).float())

    def preview(self, model, batch):
        return np.concatenate(self._tiles(batch, self._predict(model, batch), range(min(4, len(batch["key"])))), 1)

    def _tiles(self, batch, pred, indices):
        from face3d_data.viz import draw_landmarks
        space = self.space()
        lm_pred = space.vertices(pred, space.landmarks)[..., :2].cpu().numpy()
        tiles = []
        for i in indices:
            img = (batch["image"][i].detach().float().permute(1, 2, 0).cpu().numpy() * 128 + 127.5)
            img = np.clip(img, 0, 255).round().astype(np.uint8)
            img = draw_landmarks(img, batch["landmarks"][i].cpu().numpy(), color=(0, 255, 0))
            tiles.append(draw_landmarks(img, lm_pred[i], color=(255, 0, 0)))
        return tiles

    def evaluate(self, model, loader, device, report_dir=None):
        from face3d_data.train.loop import to_device
        was_training = model.training
        model.eval()
        space = self.space(device)
        nmes, dists, yaws, losses, count = [], [], [], {}, 0
        worst: list = []
        with torch.no_grad():
            for batch in loader:
                batch = to_device(batch, device)
                pred = self._predict(model, batch)
                gt = batch["params"].double()
                b = gt.shape[0]
                _, parts = self.loss(model, batch)
                for k, v in parts.items():
                    losses[k] = losses.get(k, 0.0) + float(v) * b
                count += b
                lm_gt = batch["landmarks"].double()
                lm_pred = space.vertices(pred, space.landmarks)[..., :2]
                norm = box_normaliser(lm_gt)
                nme = ((lm_pred - lm_gt).norm(dim=-1).mean(-1) / norm).cpu()
                vp, vg = space.vertices(pred), space.vertices(gt)
                vp = vp - torch.stack([torch.zeros_like(norm), torch.zeros_like(norm),
                                       (vp[..., 2] - vg[..., 2]).mean(-1)], -1)[:, None]
                dist = ((vp - vg).norm(dim=-1).mean(-1) / norm).cpu()
                nmes.append(nme)
                dists.append(dist)
                yaws.append(batch["yaw"].double().cpu().abs() * 180 / math.pi)
                if report_dir is not None:
                    order = torch.argsort(nme, descending=True)[:8].tolist()
                    tiles = self._tiles(batch, pred, order)
                    worst = sorted(worst + [(float(nme[i]), batch["key"][i], t) for i, t in zip(order, tiles)],
                                   key=lambda w: -w[0])[:8]
        if was_training:
            model.train()
        nme, dist, yaw = (torch.cat(x) if x else torch.zeros(0) for x in (nmes, dists, yaws))
        metrics: dict[str, Any] = {f"loss_{k}": v / max(count, 1) for k, v in losses.items()}
        metrics["loss"] = metrics.get(f"loss_{self.cfg['loss']}", float("nan"))
        metrics.update({"nme_2d": float(nme.mean()) if len(nme) else float("nan"),
                        "vertex_distance": float(dist.mean()) if len(dist) else float("nan"),
                        "normaliser": "sqrt(w*h) of the ground-truth 68-landmark box (crop frame); "
                                      "vertex_distance: mean 3-D per-vertex distance, z offset aligned",
                        "samples": count})
        buckets = []
        for lo, hi in YAW_BUCKETS:
            sel = (yaw >= lo) & (yaw <= hi) if lo == 0 else (yaw > lo) & (yaw <= hi)
            if sel.any():
                metrics[f"nme_2d_yaw_{lo}_{hi}"] = float(nme[sel].mean())
                buckets.append(metrics[f"nme_2d_yaw_{lo}_{hi}"])
            metrics[f"samples_yaw_{lo}_{hi}"] = int(sel.sum())
        if len(buckets) == len(YAW_BUCKETS):
            metrics["nme_2d_balanced"] = float(np.mean(buckets))
        if report_dir is not None and worst:
            from face3d_data.io.images import write_image
            from face3d_data.viz import contact_sheet
            write_image(os.path.join(report_dir, "worst.png"),
                        contact_sheet([t for _, _, t in worst], ncols=4, labels=[f"{k} {v:.3f}" for v, k, _ in worst]))
        return metrics

    def checkpoint_extras(self):
        mean, std = self._stats
        return {"param_mean": torch.tensor(mean), "param_std": torch.tensor(std)}

    def load_extras(self, extras):
        if "param_mean" in extras:
            self._stats = (np.asarray(extras["param_mean"], np.float64), np.asarray(extras["param_std"], np.float64))
            self._space = None
