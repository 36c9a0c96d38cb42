"""3D Morphable Models: :class:`MorphableModel`, loaders, the embedded model, 300W-LP pose algebra.

- :mod:`face3d_data.morphable.model`    the ``MorphableModel`` class and ``REGIONS`` codes
- :mod:`face3d_data.morphable.pose`     ``Pose_Para`` algebra, angle conventions, :func:`project`
- :mod:`face3d_data.morphable.builtin`  the embedded licence-free model (:func:`builtin_model`)
- :mod:`face3d_data.morphable.loaders`  :func:`load_model` for BFM2009 / face3d / Deep3D / 3DDFA files
- :mod:`face3d_data.morphable.dataset`  300W-LP reader and writer
- :mod:`face3d_data.morphable.synth`    synthetic 300W-LP samples (:func:`synthesize`)
- :mod:`face3d_data.morphable.picture`  pictures of a model (mean and ±kσ of its modes)
- :mod:`face3d_data.morphable.testing`  random models and fixtures for tests and benchmarks
"""

from face3d_data.morphable.model import CONVENTIONS, REGIONS, MorphableModel
from face3d_data.morphable.pose import (angles_to_matrix, check_pose_para, convert_angles,
                                        matrix_to_angles, orthonormalize, pose_para_to_srt, project,
                                        srt_to_pose_para)
from face3d_data.morphable.builtin import builtin_model
from face3d_data.morphable.loaders import detect_format, load_model

__all__ = ["MorphableModel", "REGIONS", "CONVENTIONS", "angles_to_matrix", "matrix_to_angles",
           "convert_angles", "orthonormalize", "check_pose_para", "pose_para_to_srt",
           "srt_to_pose_para", "project", "builtin_model", "load_model", "detect_format"]
