"""3D Morphable Models: :class:`MorphableModel`, loaders, the embedded model.

- :mod:`face3d_data.morphable.model`    the ``MorphableModel`` class and ``REGIONS`` codes
- :mod:`face3d_data.morphable.builtin`  the embedded licence-free model (:func:`builtin_model`)
- :mod:`face3d_data.morphable.loaders`  :func:`load_model` for BFM2009 / face3d / Deep3D / 3DDFA files
- :mod:`face3d_data.morphable.picture`  pictures of a model (mean and ±kσ of its modes)
- :mod:`face3d_data.morphable.checks`   model reports (counts, extents, basis orthonormality)
- :mod:`face3d_data.morphable.testing`  random models and fixtures for tests and benchmarks

The 300W-LP format (pose algebra, labels, samples, synthetic samples) is :mod:`face3d_data.w300lp`.
"""

from face3d_data.morphable.builtin import builtin_model
from face3d_data.morphable.loaders import detect_format, load_model
from face3d_data.morphable.model import CONVENTIONS, REGIONS, MorphableModel

__all__ = ["MorphableModel", "REGIONS", "CONVENTIONS", "builtin_model", "load_model", "detect_format"]
