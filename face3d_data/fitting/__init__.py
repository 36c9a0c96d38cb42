"""3DMM fitting from 68 2D landmarks (see docs/fitting.md).

- :func:`fit_landmarks` / :class:`FitResult`  the public API (:mod:`face3d_data.fitting.fit`)
- :mod:`~face3d_data.fitting.camera`          scaled-orthographic camera (Gold Standard + SVD)
- :mod:`~face3d_data.fitting.contour`         jaw candidate lines and landmark marching
- :mod:`~face3d_data.fitting.ridge`           Tikhonov solves for identity and expression
- :mod:`~face3d_data.fitting.landmark_basis`  per-model precomputation (cached)
- :mod:`~face3d_data.fitting.checks`          input validation
"""

from face3d_data.fitting.fit import FitResult, fit_landmarks

__all__ = ["fit_landmarks", "FitResult"]
