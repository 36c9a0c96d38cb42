"""Parameter-regression geometry and losses: whitening, vertices from label vectors, PDC / VDC / WPDC.

Label vector ``p = [pitch, yaw, roll, tx, ty, tz, f, shape (Ks), exp (Ke)]`` in the crop
(:mod:`face3d_data.train.params_data`); the network predicts the whitened ``(p - mean) / std``.

- **pdc**: mean squared error of whitened parameters.
- **vdc** (vertex distance cost, 3DDFA): both vectors de-whitened, the prediction's ``tz`` set to
  the ground truth's (a depth offset the image cannot show), vertices reconstructed and projected
  into the crop (canonical x, y; z = f·(R·S)_z + tz), mean squared coordinate error over the 68
  landmarks plus ``n_random`` random vertices.
- **wpdc** (weighted parameter distance cost, 3DDFA): whitened squared errors weighted by how far
  each parameter's error alone moves the vertices: weight_i = ‖V(p_gt with p_i := p̂_i) − V(p_gt)‖
  over the same vertex subset (exact for the linear parameters: ``|Δα_j|·f·‖basis column j‖``,
  ``|Δt|·√n``; recomputed for the angles and ``f``), ``tz`` weighted 0, weights detached and divided
  by their per-sample maximum (+1e-6).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from face3d_data.train.rnet_face import euler_to_matrix

__all__ = ["ParamSpace", "rotation_300wlp"]


def rotation_300wlp(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) [pitch, yaw, roll] radians -> (B, 3, 3) ``(Rz·Ry·Rx)ᵀ`` applied as ``R @ p`` (300W-LP)."""
    return euler_to_matrix(angles).transpose(1, 2)


class ParamSpace(nn.Module):
    """Whitening statistics + the model's geometry, for losses and metrics (float64 inside).

    Args:
        model: the :class:`~face3d_data.morphable.MorphableModel` the labels belong to (raw units).
        n_shape, n_exp: coefficients in the label vector.
        mean, std: (P,) whitening statistics.
        size: crop side (the y flip of the Matlab frame).
    """

    def __init__(self, model, n_shape: int, n_exp: int, mean, std, size: int):
        super().__init__()
        self.n_shape, self.n_exp, self.size = int(n_shape), int(n_exp), int(size)
        n = model.n_vertices
        self.register_buffer("mean_shape", torch.tensor(model.mean, dtype=torch.float64))
        block = np.concatenate([model.shape_basis[:, :, :n_shape], model.exp_basis[:, :, :n_exp]], -1)
        self.register_buffer("basis", torch.tensor(block.reshape(n, 3, -1), dtype=torch.float64))
        self.register_buffer("landmarks", torch.tensor(np.asarray(model.landmarks, np.int64)))
        self.register_buffer("p_mean", torch.as_tensor(np.asarray(mean, np.float64)))
        self.register_buffer("p_std", torch.as_tensor(np.asarray(std, np.float64)))

    @property
    def n_params(self) -> int:
        return 7 + self.n_shape + self.n_exp

    def whiten(self, p: torch.Tensor) -> torch.Tensor:
        return (p.double() - self.p_mean) / self.p_std

    def unwhiten(self, w: torch.Tensor) -> torch.Tensor:
        return w.double() * self.p_std + self.p_mean

    def shape(self, p: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P) raw label vectors -> (B, K, 3) model-space shapes of vertices ``index`` (all if None)."""
        mean = self.mean_shape if index is None else self.mean_shape[index]
        basis = self.basis if index is None else self.basis[index]
        return mean + torch.einsum("nck,bk->bnc", basis, p[:, 7:])

    def project(self, p: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """(B, P), (B, K, 3) -> (B, K, 3) canonical crop coordinates (x, y; z larger = closer)."""
        rot = rotation_300wlp(p[:, :3])
        v = p[:, 6, None, None] * (shape @ rot.transpose(1, 2))
        x = v[..., 0] + p[:, 3, None] - 1.0
        y = self.size - (v[..., 1] + p[:, 4, None])
        z = v[..., 2] + p[:, 5, None]
        return torch.stack([x, y, z], -1)

    def vertices(self, p: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.project(p, self.shape(p, index))

    def sample_index(self, n_random: int, generator: torch.Generator) -> torch.Tensor:
        """The 68 landmarks plus ``n_random`` random vertices (drawn with ``generator``)."""
        n = self.mean_shape.shape[0]
        extra = torch.randperm(n, generator=generator)[:n_random].to(self.landmarks.device)
        return torch.cat([self.landmarks, extra])

    # ---- losses ------------------------------------------------------------------------------------
    def pdc(self, pred_w: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return ((pred_w.double() - self.whiten(gt)) ** 2).mean().float()

    def vdc(self, pred_w: torch.Tensor, gt: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        pred = self.unwhiten(pred_w)
        pred = torch.cat([pred[:, :5], gt[:, 5:6].double(), pred[:, 6:]], 1)
        gt = gt.double()
        return ((self.vertices(pred, index) - self.vertices(gt, index)) ** 2).mean().float()

    def wpdc_weights(self, pred: torch.Tensor, gt: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, P) detached weights (module docs)."""
        with torch.no_grad():
            pred, gt = pred.double(), gt.double()
            delta = (pred - gt).abs()
            w = torch.zeros_like(gt)
            base = self.vertices(gt, index)
            for i in (0, 1, 2, 6):                       # the non-linear pose entries: recompute
                q = gt.clone()
                q[:, i] = pred[:, i]
                w[:, i] = (self.vertices(q, index) - base).flatten(1).norm(dim=1)
            k = float(len(index)) ** 0.5
            w[:, 3] = delta[:, 3] * k
            w[:, 4] = delta[:, 4] * k
            col = self.basis[index].flatten(0, 1).norm(dim=0)                          # (Ks + Ke,)
            w[:, 7:] = delta[:, 7:] * gt[:, 6:7].abs() * col
            w = w / w.amax(1, keepdim=True).clamp_min(1e-12) + 1e-6
            w[:, 5] = 0.0
        return w

    def wpdc(self, pred_w: torch.Tensor, gt: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        w = self.wpdc_weights(self.unwhiten(pred_w.detach()), gt, index)
        return (w * (pred_w.double() - self.whiten(gt)) ** 2).mean().float()
