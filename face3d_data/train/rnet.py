"""The ``rnet`` training task: Deep3DFaceRecon's R-Net, weakly supervised by a differentiable render.

Pieces: :mod:`~face3d_data.train.rnet_data` (lists, alignment, augmentation),
:mod:`~face3d_data.train.rnet_model` (ResNet + zero head), :mod:`~face3d_data.train.rnet_face`
(coefficients -> mesh, SH-lit colours, landmarks), :mod:`~face3d_data.train.renderer` (camera and
rasteriser), :mod:`~face3d_data.train.rnet_losses` (the six terms), and
:mod:`~face3d_data.train.rnet_arcface` (optional identity loss). Options:
``pipelines/configs/train_rnet.yaml``; recipe and sources: docs/training.md.

Only the network is the trained (and checkpointed) module; the face model, renderer and ArcFace
net belong to the task and are rebuilt from the configuration.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from face3d_data.errors import ConfigError, InputError
from face3d_data.train.backbones import set_bn_momentum
from face3d_data.train.renderer import BACKENDS, FaceRenderer, PinholeCamera
from face3d_data.train.rnet_data import RNetDataset, list_paths
from face3d_data.train.rnet_face import RNetFaceModel
from face3d_data.train.rnet_losses import (
    gamma_loss,
    identity_loss,
    landmark_loss,
    photometric_loss,
    reflectance_loss,
    regulariser,
)
from face3d_data.train.rnet_model import RNet
from face3d_data.train.task import Task

__all__ = ["RNetTask", "load_face_model"]

_MODEL_CACHE: dict[str, Any] = {}


def load_face_model(spec: str):
    """``load_model(spec)`` cached per process (``builtin`` or a model file)."""
    if spec not in _MODEL_CACHE:
        from face3d_data.morphable import load_model
        try:
            _MODEL_CACHE[spec] = load_model(spec)
        except InputError as exc:
            raise ConfigError(f"model: {exc}") from None
        except FileNotFoundError:
            raise ConfigError(f"model: {spec}: no such file") from None
    return _MODEL_CACHE[spec]


def box_normaliser(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) -> (B,) √(w·h) of each landmark set's bounding box."""
    wh = landmarks.amax(1) - landmarks.amin(1)
    return (wh[:, 0] * wh[:, 1]).clamp_min(1e-12).sqrt()


class RNetTask(Task):
    """Deep3DFaceRecon's R-Net on ``data_preparation`` output (see the module docs)."""

    name = "rnet"
    best_metric = "loss"
    best_lower = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._face: RNetFaceModel | None = None
        self._arcface = None

    # ---- configuration --------------------------------------------------------------------------
    def check_config(self) -> None:
        c = self.cfg
        if not c.get("data_root"):
            raise ConfigError("rnet: --data-root is required (the --data_root given to data_preparation)")
        for key in ("image_size", "depth"):
            if int(c[key]) <= 0:
                raise ConfigError(f"{key}: expected > 0, got {c[key]}")
        if not 0 < float(c.get("bn_momentum", 0.1)) <= 1:
            raise ConfigError(f"bn_momentum: expected a number in (0, 1], got {c.get('bn_momentum')!r}")
        if int(c["depth"]) not in (18, 34, 50, 101):
            raise ConfigError(f"depth: expected 18, 34, 50 or 101, got {c['depth']}")
        if c["renderer"] not in BACKENDS:
            raise ConfigError(f"renderer: expected one of {BACKENDS}, got {c['renderer']!r}")
        on_cuda = c.get("device", "auto") != "cpu" and torch.cuda.is_available()
        try:
            FaceRenderer(backend=c["renderer"]).resolved_backend(torch.device("cuda" if on_cuda else "cpu"))
        except ValueError as exc:
            raise ConfigError(f"renderer: {exc} (use auto, cpu or cuda)") from None
        for key in ("w_color", "w_lm", "w_feat", "w_reg", "w_id", "w_exp", "w_tex", "w_gamma", "w_reflc"):
            if not float(c[key]) >= 0:
                raise ConfigError(f"{key}: expected a weight >= 0, got {c[key]}")
        for key in ("imagenet_weights", "arcface_weights"):
            if c[key] and not os.path.isfile(c[key]):
                raise ConfigError(f"{key}: {c[key]}: no such file (weights are never downloaded; "
                                  f"give a local path or leave it empty)")
        if self.use_identity:
            from face3d_data.train.rnet_arcface import load_arcface
            self._arcface = load_arcface(c["arcface_weights"])
        files = list_paths(c["data_root"], c["mode"])
        for path in files.values():
            if not os.path.isfile(path):
                raise ConfigError(f"rnet: {path}: list not found (run data_preparation with --data_root "
                                  f"{c['data_root']} --mode {c['mode']})")
        self.face_model()  # fails early on a bad model

    @property
    def use_identity(self) -> bool:
        return bool(self.cfg["arcface_weights"]) and float(self.cfg["w_feat"]) > 0

    def camera(self) -> PinholeCamera:
        c = self.cfg
        base = PinholeCamera(float(c["focal"]), float(c["center"]), 224, float(c["camera_distance"]),
                             float(c["znear"]), float(c["zfar"]))
        return base.scaled(int(c["image_size"]))

    def face_model(self) -> RNetFaceModel:
        if self._face is None:
            c = self.cfg
            model = load_face_model(c["model"])
            skin = front = None
            if c.get("deep3d_masks"):
                from face3d_data.train.rnet_face import load_deep3d_masks
                skin, front = load_deep3d_masks(c["deep3d_masks"], model)
            self._face = RNetFaceModel(model, self.camera(), int(c["n_id"]), int(c["n_exp"]), int(c["n_tex"]),
                                       float(c["units_per_decimetre"]), skin_mask=skin, front_triangles=front)
        return self._face

    def template(self) -> np.ndarray:
        from face3d_data.landmarks import standard_landmarks_3d5
        return standard_landmarks_3d5(load_face_model(self.cfg["model"]), float(self.cfg["units_per_decimetre"]))

    # ---- data -----------------------------------------------------------------------------------
    def _dataset(self, mode: str, augment: bool) -> RNetDataset:
        c = self.cfg
        aug = {"shift_px": float(c["aug_shift_px"]), "scale_delta": float(c["aug_scale_delta"]),
               "rotation_deg": float(c["aug_rotation_deg"]), "flip_prob": float(c["aug_flip_prob"])}
        return RNetDataset(c["data_root"], mode, self.template(), int(c["image_size"]), augment=augment,
                           seed=int(c["seed"]), aug=aug, landmarks_y_up=bool(c["landmarks_y_up"]),
                           limit=int(c["limit"]))

    def datasets(self):
        c = self.cfg
        train = self._dataset(c["mode"], augment=bool(c["augment"]))
        val = None
        if c["val_mode"] and os.path.isfile(list_paths(c["data_root"], c["val_mode"])["masks"]):
            val = self._dataset(c["val_mode"], augment=False)
        return train, val

    def eval_dataset(self, datalist):
        return self._dataset(datalist or self.cfg["val_mode"] or self.cfg["mode"], augment=False)

    def data_files(self):
        c = self.cfg
        files = list(list_paths(c["data_root"], c["mode"]).values())
        if c["val_mode"]:
            files += [p for p in list_paths(c["data_root"], c["val_mode"]).values() if os.path.isfile(p)]
        return files

    # ---- model and loss -------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        model = RNet(self.face_model().n_coefficients, int(self.cfg["depth"]), self.cfg["imagenet_weights"])
        return set_bn_momentum(model, float(self.cfg.get("bn_momentum", 0.1)))

    def _parts(self, model, batch: dict, with_render: bool = False):
        c = self.cfg
        images = batch["image"]
        face = self.face_model().to(images.device)
        coeffs = model(images).float()
        out = face(coeffs)
        split = face.split(coeffs)
        renderer = FaceRenderer(face.camera, backend=c["renderer"])
        r = renderer(out.vertices, face.triangles, out.colour)
        ids = r.triangle_id
        front = (face.front[ids.clamp(min=0)] & (ids >= 0))[:, None].float()
        photo_mask = batch["mask"].float() * front
        parts = {
            "color": photometric_loss(r.image, images, photo_mask),
            "lm": landmark_loss(out.landmarks, batch["landmarks"], int(c["image_size"])),
            "reg": regulariser(split.id, split.exp, split.tex, float(c["w_id"]), float(c["w_exp"]),
                               float(c["w_tex"])),
            "gamma": gamma_loss(split.gamma),
            "reflc": reflectance_loss(out.albedo, face.skin),
        }
        if self.use_identity:
            from face3d_data.train.rnet_arcface import (
                five_points,
                similarity_to_template,
                warp_to_template,
            )
            net = self._arcface.to(images.device)
            blended = r.image * r.mask + images.float() * (1 - r.mask)
            m_true = similarity_to_template(five_points(batch["landmarks"].float()))
            m_pred = similarity_to_template(five_points(out.landmarks))
            with torch.no_grad():
                f_true = net(warp_to_template(images.float(), m_true) * 2 - 1)
            f_pred = net(warp_to_template(blended, m_pred) * 2 - 1)
            parts["feat"] = identity_loss(f_pred, f_true)
        extra = (out, r, photo_mask) if with_render else None
        return parts, extra

    def _total(self, parts: dict) -> torch.Tensor:
        c = self.cfg
        weights = {"color": c["w_color"], "lm": c["w_lm"], "reg": c["w_reg"], "gamma": c["w_gamma"],
                   "reflc": c["w_reflc"], "feat": c["w_feat"]}
        return sum(float(weights[k]) * v for k, v in parts.items())

    def loss(self, model, batch):
        parts, _ = self._parts(model, batch)
        return self._total(parts), parts

    # ---- outputs --------------------------------------------------------------------------------
    def _tiles(self, batch, out, r, indices) -> list[np.ndarray]:
        from face3d_data.viz import draw_landmarks
        rows = []
        for i in indices:
            img = (batch["image"][i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255)
            img = img.round().astype(np.uint8)
            m = r.mask[i, 0].detach().cpu().numpy()[..., None]
            ren = r.image[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
            blend = (ren * m + img * (1 - m)).round().astype(np.uint8)
            lm = draw_landmarks(img, batch["landmarks"][i].detach().cpu().numpy(), color=(0, 255, 0))
            lm = draw_landmarks(lm, out.landmarks[i].detach().cpu().numpy(), color=(255, 0, 0))
            rows.append(np.concatenate([img, blend, lm], 1))
        return rows

    def preview(self, model, batch):
        _parts, (out, r, _) = self._parts(model, batch, with_render=True)
        n = min(4, batch["image"].shape[0])
        return np.concatenate(self._tiles(batch, out, r, range(n)), 0)

    def evaluate(self, model, loader, device, report_dir=None):
        from face3d_data.train.loop import to_device
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        count, nme_all, photo_num, photo_den = 0, [], 0.0, 0.0
        worst: list[tuple[float, str, np.ndarray]] = []
        with torch.no_grad():
            for batch in loader:
                batch = to_device(batch, device)
                parts, (out, r, photo_mask) = self._parts(model, batch, with_render=True)
                b = batch["image"].shape[0]
                total = self._total(parts)
                for k, v in {**parts, "loss": total}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * b
                count += b
                gt = batch["landmarks"].float()
                nme = ((out.landmarks - gt).norm(dim=-1).mean(-1) / box_normaliser(gt)).cpu()
                nme_all.append(nme)
                err = ((r.image - batch["image"].float()) ** 2).sum(1, keepdim=True).sqrt()
                photo_num += float((err * photo_mask).sum())
                photo_den += float(photo_mask.sum())
                if report_dir is not None:
                    order = torch.argsort(nme, descending=True)[:8].tolist()
                    tiles = self._tiles(batch, out, r, order)
                    worst += [(float(nme[i]), batch["key"][i], t) for i, t in zip(order, tiles)]
                    worst = sorted(worst, key=lambda w: -w[0])[:8]
        if was_training:
            model.train()
        nme = torch.cat(nme_all) if nme_all else torch.zeros(0)
        metrics: dict[str, Any] = {k: v / max(count, 1) for k, v in sums.items()}
        metrics.update({
            "nme_2d": float(nme.mean()) if len(nme) else float("nan"),
            "nme_normaliser": "sqrt(w*h) of the ground-truth 68-landmark box, crop frame",
            "photometric_error": photo_num / max(photo_den, 1.0),
            "photometric_error_units": "mean RGB distance in [0,1] units over skin x front-face pixels",
            "samples": count,
        })
        if report_dir is not None and worst:
            from face3d_data.io.images import write_image
            from face3d_data.viz import put_label
            rows = [put_label(t, f"{k}  nme {v:.4f}") for v, k, t in worst]
            write_image(os.path.join(report_dir, "worst.png"), np.concatenate(rows, 0))
        return metrics

    def checkpoint_extras(self):
        face = self.face_model()
        return {"n_coefficients": face.n_coefficients, "n_id": face.n_id, "n_exp": face.n_exp, "n_tex": face.n_tex}

    def load_extras(self, extras):
        if extras and "n_coefficients" in extras and extras["n_coefficients"] != self.face_model().n_coefficients:
            raise ConfigError(f"checkpoint has {extras['n_coefficients']} coefficients, the model "
                              f"{self.cfg['model']!r} gives {self.face_model().n_coefficients}")
