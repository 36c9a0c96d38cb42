"""The part of a morphable model a landmark fit touches, precomputed once per model.

A fit only ever evaluates the model at the 68 landmark vertices and (for landmark marching) at
the jaw candidate vertices. :class:`LandmarkBasis` gathers those rows of the mean and of the
stacked shape+expression basis into a small local vertex set, in float64, and caches the
observation-space kernel used by the dual ridge solve (:mod:`face3d_data.fitting.ridge`).
Instances are cached per model (weakly), so repeated calls on the same model pay nothing.
"""

from __future__ import annotations

import weakref

import numpy as np

from face3d_data.fitting.contour import ContourLines, contour_lines_for

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class LandmarkBasis:
    """Mean and basis rows of the vertices a landmark fit can use.

    Attributes:
        vertices: (V,) int64 model vertex indices of the local set (landmarks ∪ contour candidates).
        landmarks: (68,) int64 local indices of the model's fixed landmark vertices.
        candidates: (17, L) int64 local indices of the contour candidates, or None (fixed contour).
        side: (17,) int8 side of each jaw landmark (see :class:`ContourLines`), or None.
        mean: (V, 3) float64 model-space mean.
        basis: (V, 3, K) float64 stacked [shape | expression] basis, K = Ks + Ke.
        std: (K,) float64 prior std of the stacked coefficients (model units).
        n_shape: Ks.
    """

    def __init__(self, model, lines: ContourLines | None):
        landmarks = np.asarray(model.landmarks, dtype=np.int64)
        wanted = landmarks if lines is None else np.concatenate([landmarks, lines.candidates.ravel()])
        self.vertices, inverse = np.unique(wanted, return_inverse=True)
        self.landmarks = inverse[:68]
        self.candidates = None if lines is None else inverse[68:].reshape(lines.candidates.shape)
        self.side = None if lines is None else lines.side
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
        self._kernels: dict = {}

    @property
    def n_coefficients(self) -> int:
        return self.basis.shape[2]

    def prior_precision(self, lambda_shape: float, lambda_exp: float) -> np.ndarray:
        """(K,) diagonal of λ·diag(1/σ²): the Tikhonov weights, in px² per squared coefficient unit."""
        lam = np.full(self.n_coefficients, float(lambda_exp))
        lam[:self.n_shape] = lambda_shape
        return lam / self.std ** 2

    def kernel(self, lambda_shape: float, lambda_exp: float) -> np.ndarray:
        """(3V, 3V) float64 ``B Λ⁻¹ Bᵀ`` over the local vertex set (rows x,y,z interleaved), cached."""
        key = (float(lambda_shape), float(lambda_exp))
        if key not in self._kernels:
            flat = self.basis.reshape(-1, self.n_coefficients)
            self._kernels[key] = (flat / self.prior_precision(*key)) @ flat.T
        return self._kernels[key]


def landmark_basis(model, contour: str) -> LandmarkBasis:
    """The (cached) :class:`LandmarkBasis` of ``model`` for ``contour`` ('marching' | 'fixed').

    A model without contour lines and without a mesh gets the fixed-vertex basis for 'marching'.
    """
    per_model = _CACHE.setdefault(model, {})
    if contour not in per_model:
        per_model[contour] = LandmarkBasis(model, contour_lines_for(model, contour))
    return per_model[contour]
