"""The ``prnet`` task: ResFCN on posmap datalists — loss, landmark metrics, previews, prediction.

- Input: RGB crop / 255 (the released PRNet's inference convention). Output: position map in crop
  pixels (sigmoid × 1.1·R). Losses are computed on maps divided by ``1.1·R`` (units of the
  network's range, the scale jnulzl's TF trainer uses), so their size does not depend on R.
- Loss ``paper``: per sample ``Σ_texels ‖pred − gt‖₂ · W / Σ W`` with ``W = weight mask × face
  mask``; ``mse`` uses the squared distance. Mean over the batch.
- Metrics (:func:`landmark_errors`): the 68 keypoints decoded with the exact decoder of the UV
  assets (:class:`~face3d_data.posmap.KeypointWeights`) from the predicted and ground-truth maps;
  NME = mean point error / √(w·h) of the ground-truth 68-point 2D box; 3D errors with each point
  set's z centred on its mean; dense errors over the face-mask texels, same normaliser.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from face3d_data.errors import ConfigError, InputError
from face3d_data.train.augment import AugmentConfig
from face3d_data.train.posmap_data import PosmapDataset, datalist_root
from face3d_data.train.resfcn import ResFCN
from face3d_data.train.task import Task
from face3d_data.train.uv_data import UVData, load_uv_data

#: |yaw| buckets in degrees (AFLW2000-3D protocol).
YAW_BUCKETS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
NORMALISER = "sqrt(w*h) of the ground-truth 68-point 2D bounding box"


def posmap_loss(pred: torch.Tensor, gt: torch.Tensor, weight: torch.Tensor, kind: str = "paper",
                eps: float = 1e-8) -> torch.Tensor:
    """Weighted per-texel distance, averaged over the batch.

    Args:
        pred, gt: (B, 3, R, R) position maps (same units). weight: (R, R) texel weights.
        kind: ``paper`` (Euclidean distance, √(d² + eps)) or ``mse`` (squared distance).
    """
    d2 = ((pred.float() - gt.float()) ** 2).sum(dim=1)
    d = torch.sqrt(d2 + eps) if kind == "paper" else d2
    w = weight.float()
    return ((d * w).sum(dim=(1, 2)) / w.sum().clamp_min(1e-12)).mean()


def decode_keypoints(posmap: torch.Tensor, texels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) keypoints from (B, 3, R, R) maps with the exact decoder's (K, J) texels / weights."""
    b = posmap.shape[0]
    flat = posmap.float().reshape(b, 3, -1)
    picked = flat[:, :, texels.reshape(-1)].reshape(b, 3, *texels.shape)
    return (picked * weights.to(flat.dtype)).sum(dim=-1).permute(0, 2, 1)


def landmark_errors(pred: torch.Tensor, gt: torch.Tensor, texels: torch.Tensor, weights: torch.Tensor,
                    face_ind: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample normalised errors (B,) and the decoded (B, 68, 3) keypoints (module docstring)."""
    kp, kg = decode_keypoints(pred, texels, weights), decode_keypoints(gt, texels, weights)
    extent = kg[..., :2].amax(dim=1) - kg[..., :2].amin(dim=1)
    norm = torch.sqrt((extent[:, 0] * extent[:, 1]).clamp_min(1e-12))
    e2 = torch.linalg.norm(kp[..., :2] - kg[..., :2], dim=-1).mean(1) / norm

    def centred(points):
        out = points.clone()
        out[..., 2] -= out[..., 2].mean(dim=1, keepdim=True)
        return out

    e3 = torch.linalg.norm(centred(kp) - centred(kg), dim=-1).mean(1) / norm
    b = pred.shape[0]
    dp = pred.float().reshape(b, 3, -1)[:, :, face_ind].permute(0, 2, 1)
    dg = gt.float().reshape(b, 3, -1)[:, :, face_ind].permute(0, 2, 1)
    d2 = torch.linalg.norm(dp[..., :2] - dg[..., :2], dim=-1).mean(1) / norm
    d3 = torch.linalg.norm(centred(dp) - centred(dg), dim=-1).mean(1) / norm
    return {"nme_2d": e2, "nme_3d": e3, "dense_nme_2d": d2, "dense_nme_3d": d3,
            "pred_kpt": kp, "gt_kpt": kg}


def by_yaw(values: np.ndarray, yaws: np.ndarray) -> dict[str, Any] | None:
    """Means per |yaw| bucket and their balanced mean, or None when no yaw is known."""
    known = np.isfinite(yaws)
    if not known.any():
        return None
    out: dict[str, Any] = {}
    means = []
    for lo, hi in YAW_BUCKETS:
        a = np.abs(yaws)
        sel = known & (a >= lo) & ((a < hi) if hi < 90 else (a <= hi + 1e-6))
        name = f"{int(lo)}-{int(hi)}"
        out[name] = {"count": int(sel.sum()), "mean": float(values[sel].mean()) if sel.any() else None}
        if sel.any():
            means.append(float(values[sel].mean()))
    out["balanced_mean"] = float(np.mean(means))
    out["unknown_yaw"] = int((~known).sum())
    return out


class PRNetTask(Task):
    """PRNet on ``posmap_<split>.txt`` (module docstring; options in train_prnet.yaml)."""

    name = "prnet"
    best_metric = "nme_2d"
    best_lower = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._uv: UVData | None = None

    # ---- configuration ------------------------------------------------------------------------
    def check_config(self):
        cfg = self.cfg
        if cfg.get("loss") not in ("paper", "mse"):
            raise ConfigError(f"loss: expected paper or mse, got {cfg.get('loss')!r}")
        if int(cfg.get("width", 0)) < 1:
            raise ConfigError(f"width: expected an integer >= 1, got {cfg.get('width')!r}")
        try:
            AugmentConfig.from_config(cfg).check()
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None

    def _require_datalist(self) -> str:
        path = self.cfg.get("datalist")
        if not path:
            raise ConfigError("prnet: --datalist POSMAP_OUT/datalist/posmap_train.txt is required")
        if not os.path.isfile(path):
            raise ConfigError(f"prnet: datalist {path!r} not found")
        return path

    def uv(self) -> UVData:
        """The UV assets: from the checkpoint, ``uv_data``, or ``<posmap out>/uv-data``."""
        if self._uv is None:
            folder = self.cfg.get("uv_data") or os.path.join(datalist_root(self._require_datalist()), "uv-data")
            self._uv = load_uv_data(folder)
            if self.cfg.get("resolution") and int(self.cfg["resolution"]) != self._uv.resolution:
                raise ConfigError(f"resolution {self.cfg['resolution']} differs from the uv-data's "
                                  f"{self._uv.resolution}")
            if self._uv.resolution % 32:
                raise ConfigError(f"ResFCN needs a resolution that is a multiple of 32, the data has "
                                  f"{self._uv.resolution}")
        return self._uv

    def _dataset(self, datalist: str, augment: bool) -> PosmapDataset:
        return PosmapDataset(datalist, self.uv().resolution, root=self.cfg.get("data_root") or None,
                             seed=int(self.cfg["seed"]), augment=augment,
                             aug=AugmentConfig.from_config(self.cfg), limit=int(self.cfg.get("limit", 0)),
                             yaw_root=self.cfg.get("yaw_root") or None)

    def datasets(self):
        train = self._dataset(self._require_datalist(), bool(self.cfg.get("augment", True)))
        val_path = self.cfg.get("val_datalist")
        if val_path and not os.path.isfile(val_path):
            raise ConfigError(f"prnet: val_datalist {val_path!r} not found")
        val = self._dataset(val_path, False) if val_path else None
        return train, val

    def eval_dataset(self, datalist):
        path = datalist or self.cfg.get("val_datalist")
        if not path:
            raise ConfigError("eval prnet: --datalist is required (the run had no val_datalist)")
        if not os.path.isfile(path):
            raise ConfigError(f"eval prnet: datalist {path!r} not found")
        return PosmapDataset(path, self.uv().resolution, limit=0, yaw_root=self.cfg.get("yaw_root") or None)

    def data_files(self):
        return [p for p in (self.cfg.get("datalist"), self.cfg.get("val_datalist")) if p]

    def checkpoint_extras(self):
        return {"uv": self.uv().to_state()}

    def load_extras(self, extras):
        if "uv" in extras:
            self._uv = UVData.from_state(extras["uv"])

    # ---- model and loss -----------------------------------------------------------------------
    def build_model(self):
        return ResFCN(int(self.cfg["width"]), self.uv().resolution, bn_momentum=float(self.cfg["bn_momentum"]))

    def _tensors(self, device):
        key = str(device)
        cache = getattr(self, "_tcache", {})
        if key not in cache:
            uv = self.uv()
            cache[key] = {
                "weight": torch.from_numpy(uv.weight_mask * uv.face_mask).to(device),
                "texels": torch.from_numpy(np.asarray(uv.kpt_weights.texels, np.int64)).to(device),
                "weights": torch.from_numpy(np.asarray(uv.kpt_weights.weights, np.float32)).to(device),
                "face_ind": torch.from_numpy(uv.face_ind).to(device)}
            self._tcache = cache
        return cache[key]

    def loss(self, model, batch):
        image, gt = batch["image"], batch["posmap"]
        pred = model(image)
        scale = 1.1 * gt.shape[-1]
        t = self._tensors(image.device)
        total = posmap_loss(pred / scale, gt / scale, t["weight"], self.cfg["loss"])
        return total, {f"loss_{self.cfg['loss']}": total.detach()}

    # ---- outputs ------------------------------------------------------------------------------
    def preview(self, model, batch):
        from face3d_data.posmap import preview_image
        from face3d_data.viz import draw_landmarks

        n = min(4, batch["image"].shape[0])
        pred = model(batch["image"][:n]).float()
        t = self._tensors(pred.device)
        kp = decode_keypoints(pred, t["texels"], t["weights"]).cpu().numpy()
        kg = decode_keypoints(batch["posmap"][:n], t["texels"], t["weights"]).cpu().numpy()
        rows = []
        for i in range(n):
            img = (batch["image"][i].permute(1, 2, 0).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
            img = draw_landmarks(draw_landmarks(img, kg[i, :, :2], (0, 255, 0)), kp[i, :, :2], (255, 0, 0))
            p = preview_image(pred[i].permute(1, 2, 0).cpu().numpy())
            g = preview_image(batch["posmap"][i].permute(1, 2, 0).cpu().numpy())
            rows.append(np.concatenate([img, p, g], axis=1))
        return np.concatenate(rows, axis=0)

    def evaluate(self, model, loader, device, report_dir=None):
        t = self._tensors(device)
        scale = None
        parts: dict[str, list] = {k: [] for k in ("nme_2d", "nme_3d", "dense_nme_2d", "dense_nme_3d")}
        losses, yaws, keys, pred_kpts = [], [], [], []
        for batch in loader:
            image = batch["image"].to(device)
            gt = batch["posmap"].to(device)
            pred = model(image).float()
            scale = 1.1 * gt.shape[-1]
            losses.append(float(posmap_loss(pred / scale, gt / scale, t["weight"], self.cfg["loss"]))
                          * image.shape[0])
            err = landmark_errors(pred, gt, t["texels"], t["weights"], t["face_ind"])
            for k, values in parts.items():
                values.append(err[k].cpu().numpy())
            pred_kpts.append(err["pred_kpt"].cpu().numpy())
            yaws.append(batch["yaw"].numpy())
            keys += list(batch["key"])
        if not keys:
            return {"samples": 0}
        values = {k: np.concatenate(v) for k, v in parts.items()}
        yaw = np.concatenate(yaws)
        out: dict[str, Any] = {"samples": len(keys), "loss": float(np.sum(losses) / len(keys)),
                               "normaliser": NORMALISER, "keypoint_decoder": "exact (uv_kpt_weights)",
                               "nme_3d_z": "z of each 68-point set (and each dense set) centred on its mean"}
        for k, v in values.items():
            out[k] = float(v.mean())
            buckets = by_yaw(v, yaw)
            if buckets is not None:
                out[f"{k}_by_yaw"] = buckets
        if report_dir:
            order = np.argsort(-values["nme_2d"])[:8]
            out["worst"] = [{"key": keys[i], "nme_2d": float(values["nme_2d"][i])} for i in order]
            self._worst_picture(loader.dataset, keys, order, np.concatenate(pred_kpts), values["nme_2d"],
                                os.path.join(report_dir, "worst_cases.jpg"))
        return out

    def _worst_picture(self, dataset, keys, order, pred_kpts, nme, path):
        from face3d_data.io.images import write_image
        from face3d_data.posmap import decode_landmarks
        from face3d_data.viz import contact_sheet, draw_landmarks

        index = {k: i for i, k in enumerate(dataset.keys)}
        tiles, labels = [], []
        for j in order:
            image, label = dataset.read(index[keys[j]])
            gt = decode_landmarks(label, self.uv().kpt_weights)
            tile = draw_landmarks(draw_landmarks(image, gt[:, :2], (0, 255, 0)), pred_kpts[j][:, :2], (255, 0, 0))
            tiles.append(tile)
            labels.append(f"{keys[j]} NME {100 * nme[j]:.2f}%")
        write_image(path, contact_sheet(tiles, ncols=4, labels=labels))

    def predict(self, model, image_paths, out_dir, device):
        """Per image ``<stem>.npy`` (R, R, 3) position map in the input image's pixel frame,
        ``landmarks/<stem>.txt`` (68 rows ``x y``, canonical frame), ``<stem>.obj`` (the face-mask
        texels as a mesh, image frame: x right, y down, z towards the viewer, vertex colours from
        the image) and ``contact_sheet.jpg``. Each image is taken as a face crop (like the posmap
        stage's crops) and resized to R×R."""
        import cv2

        from face3d_data.io import save_npy
        from face3d_data.io.images import read_image, write_image
        from face3d_data.io.landmarks import write_landmarks_txt
        from face3d_data.io.mesh import write_mesh
        from face3d_data.posmap import decode_landmarks
        from face3d_data.train.task import Failure
        from face3d_data.viz import contact_sheet, draw_landmarks

        uv = self.uv()
        r = uv.resolution
        failures, tiles, labels = [], [], []
        for path in image_paths:
            stem = os.path.splitext(os.path.basename(path))[0]
            try:
                image = read_image(path)
            except InputError as exc:
                failures.append(Failure(stem, exc.path or path, exc.message))
                continue
            h, w = image.shape[:2]
            crop = cv2.resize(image, (r, r), interpolation=cv2.INTER_AREA if min(h, w) > r else cv2.INTER_LINEAR)
            x = torch.from_numpy(crop.astype(np.float32).transpose(2, 0, 1) / 255.0)[None].to(device)
            with torch.no_grad():
                pos = model(x)[0].float().permute(1, 2, 0).cpu().numpy()
            pos = crop_to_image(pos, w, h)
            save_npy(os.path.join(out_dir, f"{stem}.npy"), pos.astype(np.float32))
            kpt = decode_landmarks(pos, uv.kpt_weights)
            write_landmarks_txt(os.path.join(out_dir, "landmarks", f"{stem}.txt"), kpt[:, :2])
            verts = pos.reshape(-1, 3)[uv.face_ind]
            xs = np.clip(np.rint(verts[:, 0]), 0, w - 1).astype(int)
            ys = np.clip(np.rint(verts[:, 1]), 0, h - 1).astype(int)
            write_mesh(os.path.join(out_dir, f"{stem}.obj"), verts, uv.triangles,
                       colors=image[ys, xs].astype(np.float32) / 255.0)
            if len(tiles) < 32:
                tiles.append(draw_landmarks(image, kpt[:, :2], (255, 0, 0)))
                labels.append(stem)
        if tiles:
            write_image(os.path.join(out_dir, "contact_sheet.jpg"), contact_sheet(tiles, ncols=4, labels=labels))
        return failures


def crop_to_image(posmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """A position map predicted on an R×R resize of a ``width × height`` image, in the image's frame:
    ``x ← (x + ½)·W/R − ½``, ``y ← (y + ½)·H/R − ½`` (pixel centres at integers), ``z ← z·√(W·H)/R``."""
    r = posmap.shape[0]
    out = np.asarray(posmap, np.float64).copy()
    sx, sy = width / r, height / r
    out[..., 0] = (out[..., 0] + 0.5) * sx - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * sy - 0.5
    out[..., 2] *= math.sqrt(sx * sy)
    return out.astype(np.float32)
