"""The part of a morphable model a landmark fit touches, precomputed once per model.

A fit only evaluates the model at the 68 landmark vertices and, for landmark marching, at the
jaw candidate vertices. :class:`LandmarkBasis` gathers those rows of the mean and of the stacked
[shape | expression] basis into a small local vertex set (float64) and caches the pose-independent
products the batched solves are built from (:mod:`face3d_data.fitting.ridge`):

- ``static_gram``: ``H_ab = Σ_i B_ia ⊗ B_ib`` over the *static* landmarks (those whose vertex is
  the same for every face), so the data term of the primal normal matrix for a camera ``M`` is
  ``Σ_ab (MᵀM)_ab H_ab`` — a (B, 9) × (9, K²) product instead of a (K × 2n) × (2n × K) per face;
- ``kernel``: ``B Λ⁻¹ Bᵀ`` over the local vertices (the dual / observation-space form).

Landmarks are handled internally in the order :attr:`LandmarkBasis.order`: the static ones first,
then the *dynamic* jaw landmarks (only with landmark marching), whose vertex varies per face.
Instances are cached per model (weakly), so repeated calls on the same model pay nothing.
"""

from __future__ import annotations

import weakref

import numpy as np

from face3d_data.fitting.contour import JAW, ContourLines, contour_lines_for

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class LandmarkBasis:
    """Mean and basis rows of the vertices a landmark fit can use, plus cached products.

    Attributes:
        vertices: (V,) int64 model vertex indices of the local set (landmarks ∪ contour candidates).
        order: (68,) iBUG landmark ids in internal order: static first, then dynamic (jaw).
        n_static: number of static landmarks S (68 without marching, 51 with).
        landmarks: (68,) int64 local vertex index of each landmark's fixed vertex, internal order.
        candidates: (17, L) int64 local indices of the jaw candidates, or None (fixed contour).
        side: (17,) int8 side of each jaw landmark (see :class:`ContourLines`), or None.
        mean: (V, 3) float64 model-space mean.
        basis: (V, 3, K) float64 stacked [shape | expression] basis, K = Ks + Ke.
        std: (K,) float64 prior std of the stacked coefficients (model units).
        n_shape: Ks.
    """

    def __init__(self, model, lines: ContourLines | None):
        fixed = np.asarray(model.landmarks, dtype=np.int64)
        wanted = fixed if lines is None else np.concatenate([fixed, lines.candidates.ravel()])
        self.vertices, inverse = np.unique(wanted, return_inverse=True)
        self.candidates = None if lines is None else inverse[68:].reshape(lines.candidates.shape)
        self.side = None if lines is None else lines.side
        self.order = np.arange(68) if lines is None else np.concatenate([np.arange(17, 68), JAW])
        self.n_static = 68 if lines is None else 51
        self.landmarks = inverse[:68][self.order]
        self.mean = np.asarray(model.mean, dtype=np.float64)[self.vertices]
        ks, ke = model.n_shape, model.n_exp
        self.n_shape = ks
        basis = np.empty((len(self.vertices), 3, ks + ke))
        basis[..., :ks] = model.shape_basis[self.vertices]
        basis[..., ks:] = model.exp_basis[self.vertices]
        self.basis = basis
        self.std = np.concatenate([np.asarray(model.shape_std, np.float64),
                                   np.asarray(model.exp_std, np.float64)])
        if np.any(self.std <= 0):
            raise ValueError(f"model {getattr(model, 'name', '')!r}: every shape/expression std must be "
                             "positive to regularise the fit")
        static = self.landmarks[:self.n_static]
        self.static_mean = self.mean[static]                                  # (S, 3)
        self.static_basis = np.ascontiguousarray(self.basis[static])          # (S, 3, K)
        self._gram = None
        self._kernels: dict = {}

    @property
    def n_coefficients(self) -> int:
        return self.basis.shape[2]

    def prior_precision(self, lambda_shape: float, lambda_exp: float) -> np.ndarray:
        """(K,) diagonal of λ·diag(1/σ²): the Tikhonov weights, in px² per squared coefficient unit."""
        lam = np.full(self.n_coefficients, float(lambda_exp))
        lam[:self.n_shape] = lambda_shape
        return lam / self.std ** 2

    def static_gram(self) -> np.ndarray:
        """(9, K·K) float64: ``H_ab = Σ_{i static} B_ia ⊗ B_ib`` for a, b in x, y, z (cached)."""
        if self._gram is None:
            b = self.static_basis
            self._gram = np.einsum("iak,ibl->abkl", b, b).reshape(9, -1)
        return self._gram

    def kernel(self, lambda_shape: float, lambda_exp: float) -> np.ndarray:
        """(V, 3, V, 3) float64 ``B Λ⁻¹ Bᵀ`` over the local vertex set (cached per λ)."""
        key = (float(lambda_shape), float(lambda_exp))
        if key not in self._kernels:
            flat = self.basis.reshape(-1, self.n_coefficients)
            n = len(self.vertices)
            full = ((flat / self.prior_precision(*key)) @ flat.T).reshape(n, 3, n, 3)
            static = self.landmarks[:self.n_static]
            block = full[static][:, :, static]                                # (S, 3, S, 3)
            self._kernels[key] = (full, np.ascontiguousarray(block.transpose(1, 3, 0, 2)).reshape(9, -1))
        return self._kernels[key]


def landmark_basis(model, contour: str) -> LandmarkBasis:
    """The (cached) :class:`LandmarkBasis` of ``model`` for ``contour`` ('marching' | 'fixed').

    A model without contour lines and without a mesh gets the fixed-vertex basis for 'marching'.
    """
    per_model = _CACHE.setdefault(model, {})
    if contour not in per_model:
        per_model[contour] = LandmarkBasis(model, contour_lines_for(model, contour))
    return per_model[contour]
