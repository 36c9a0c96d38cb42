"""Data augmentation with analytic label updates.

- :mod:`face3d_data.augment.rotate`: in-plane rotation of 300W-LP-format samples (image, pose,
  2D/3D landmarks, roi) about the image centre.
"""

from face3d_data.augment.rotate import (
                                        InPlaneRotation,
                                        RotatedSample,
                                        angle_suffix,
                                        in_plane_rotation,
                                        parse_fill,
                                        rotate_image,
                                        rotate_label_fields,
                                        rotate_pose,
                                        rotate_pts_fields,
                                        rotate_sample,
)

__all__ = ["InPlaneRotation", "RotatedSample", "angle_suffix", "in_plane_rotation", "parse_fill",
           "rotate_image", "rotate_label_fields", "rotate_pose", "rotate_pts_fields",
           "rotate_sample"]
