"""R-Net's loss terms with Deep3DFaceRecon's definitions (weights live in the task configuration).

Shapes: images (B, 3, S, S) in [0, 1]; masks (B, 1, S, S); landmarks (B, 68, 2) canonical crop
frame; coefficients in N(0,1) units. Every term returns a float32 scalar.
"""

from __future__ import annotations

import torch

__all__ = ["LANDMARK_WEIGHTS", "gamma_loss", "identity_loss", "landmark_loss", "photometric_loss",
           "reflectance_loss", "regulariser"]


def _landmark_weights() -> torch.Tensor:
    w = torch.ones(68)
    w[28:31] = 20.0      # lower nose ridge and tip (0-based 28-30)
    w[60:68] = 20.0      # inner lips
    return w


#: Deep3DFaceRecon's per-landmark weights: 20 on the lower nose and the inner lips, 1 elsewhere.
LANDMARK_WEIGHTS = _landmark_weights()


def photometric_loss(render: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Σ_pixels √(eps + Σ_c (render − image)²)·mask ÷ max(Σ mask, 1) over the whole batch (mask detached)."""
    mask = mask.detach().float()
    err = torch.sqrt(eps + ((render.float() - image.float()) ** 2).sum(1, keepdim=True))
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, size: int = 224,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_k w_k ‖pred_k − target_k‖² ÷ (B·68), errors measured in pixels of a 224 crop."""
    w = (LANDMARK_WEIGHTS if weights is None else weights).to(pred.device)
    d2 = (((pred.float() - target.float()) * (224.0 / size)) ** 2).sum(-1)              # (B, 68)
    return (d2 * w).sum() / d2.numel()


def regulariser(id_c: torch.Tensor, exp_c: torch.Tensor, tex_c: torch.Tensor, w_id: float = 1.0,
                w_exp: float = 0.8, w_tex: float = 1.7e-2) -> torch.Tensor:
    """(w_id Σα² + w_exp Σβ² + w_tex Σδ²) ÷ B."""
    b = id_c.shape[0]
    return (w_id * id_c.float().pow(2).sum() + w_exp * exp_c.float().pow(2).sum()
            + w_tex * tex_c.float().pow(2).sum()) / b


def gamma_loss(gamma: torch.Tensor) -> torch.Tensor:
    """mean over (B, 3, 9) of (γ − mean over colour channels)²: near-monochrome lighting."""
    g = gamma.float().view(-1, 3, 9)
    return ((g - g.mean(1, keepdim=True)) ** 2).mean()


def reflectance_loss(albedo: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """Σ over skin vertices of (albedo − mean skin albedo)² ÷ (B·#skin): a uniform skin albedo."""
    a = albedo.float()[:, skin]                                                      # (B, K, 3)
    return ((a - a.mean(1, keepdim=True)) ** 2).sum() / (a.shape[0] * a.shape[1])


def identity_loss(feat_pred: torch.Tensor, feat_true: torch.Tensor) -> torch.Tensor:
    """mean over the batch of 1 − cos(f_pred, f_true)."""
    a = torch.nn.functional.normalize(feat_pred.float(), dim=-1)
    b = torch.nn.functional.normalize(feat_true.float(), dim=-1)
    return (1.0 - (a * b).sum(-1)).mean()
