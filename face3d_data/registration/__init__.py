"""Registration of 3D face scans onto a model's topology, out-of-plane views, NoW-style errors.

- :mod:`~face3d_data.registration.pipeline`   :func:`register_scan` (landmarks -> similarity -> 3DMM fit -> NICP)
- :mod:`~face3d_data.registration.nicp`       optimal-step non-rigid ICP (Amberg et al. 2007)
- :mod:`~face3d_data.registration.solvers`    sparse SPD solves on a fixed pattern (cholespy, qdldl, CHOLMOD, SuperLU)
- :mod:`~face3d_data.registration.surface`    normals, boundaries, orientation, closest points
- :mod:`~face3d_data.registration.fit3dmm`    3DMM identity + expression fit to a scan
- :mod:`~face3d_data.registration.landmarks`  iBUG orders, units, order checks, similarity
- :mod:`~face3d_data.registration.regions`    per-vertex classes, training weights, stiffness
- :mod:`~face3d_data.registration.qa`         the quality record and status
- :mod:`~face3d_data.registration.now`        NoW-style crop, alignment and scan-to-mesh error
- :mod:`~face3d_data.registration.views`      out-of-plane views of a registered scan
- :mod:`~face3d_data.registration.synthetic`  synthetic scans with known correspondences
"""

from face3d_data.registration.pipeline import (
           Registration,
           RegistrationOptions,
           Template,
           register_scan,
)
from face3d_data.registration.synthetic import SyntheticScan, make_synthetic_scan

__all__ = [
           "Registration",
           "RegistrationOptions",
           "SyntheticScan",
           "Template",
           "make_synthetic_scan",
           "register_scan",
]
