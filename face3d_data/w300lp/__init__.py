"""The 300W-LP format: pose algebra, the label schema, samples, synthetic samples.

- :mod:`face3d_data.w300lp.pose`     ``Pose_Para`` algebra, angle conventions, :func:`project`
- :mod:`face3d_data.w300lp.labels`   the label schema (:data:`FIELDS`: every field's stored shape,
  dtype and frame), :func:`read_labels` / :func:`labels_to_mat` / :func:`write_labels`, the
  stored <-> canonical conversions (the only place they happen), coefficient checks
- :mod:`face3d_data.w300lp.samples`  :func:`find_samples`, :func:`check_data_root`,
  :func:`dataset_inputs`, :func:`load_sample` (image, labels, projected face)
- :mod:`face3d_data.w300lp.synth`    synthetic samples rendered from a morphable model
"""

from face3d_data.w300lp.labels import (
                                       FIELD_SPECS,
                                       FIELDS,
                                       PTS_SCHEMA,
                                       REQUIRED_SCHEMA,
                                       FieldSpec,
                                       Labels,
                                       check_coefficients,
                                       face_vertices,
                                       label_vector,
                                       labels_from_fields,
                                       labels_to_mat,
                                       landmarks_from_params,
                                       model_coefficients,
                                       points_to_canonical,
                                       points_to_stored,
                                       read_label_fields,
                                       read_labels,
                                       read_pts_mat,
                                       roi_of_points,
                                       roi_to_canonical,
                                       roi_to_stored,
                                       write_labels,
                                       write_pts_mat,
)
from face3d_data.w300lp.pose import (
                                       CONVENTIONS,
                                       angles_to_matrix,
                                       check_pose_para,
                                       convert_angles,
                                       matrix_to_angles,
                                       orthonormalize,
                                       pose_para_to_srt,
                                       project,
                                       srt_to_pose_para,
                                       transform,
                                       unproject_xy,
)
from face3d_data.w300lp.samples import (
                                       LoadedSample,
                                       Sample,
                                       check_data_root,
                                       dataset_inputs,
                                       find_samples,
                                       load_sample,
                                       view_index,
)

__all__ = [
    "CONVENTIONS", "angles_to_matrix", "matrix_to_angles", "convert_angles", "orthonormalize",
    "check_pose_para", "pose_para_to_srt", "srt_to_pose_para", "transform", "project", "unproject_xy",
    "FIELDS", "FIELD_SPECS", "FieldSpec", "REQUIRED_SCHEMA", "PTS_SCHEMA", "Labels", "read_labels",
    "read_pts_mat", "read_label_fields", "labels_from_fields", "labels_to_mat", "write_labels", "write_pts_mat",
    "label_vector",
    "points_to_canonical", "points_to_stored", "roi_to_canonical", "roi_to_stored", "roi_of_points",
    "check_coefficients", "model_coefficients", "face_vertices", "landmarks_from_params",
    "Sample", "LoadedSample", "find_samples", "view_index", "check_data_root", "dataset_inputs",
    "load_sample",
]
