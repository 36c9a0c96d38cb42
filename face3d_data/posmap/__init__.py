"""PRNet training data: UV assets at any resolution, landmark crops, UV position maps, splits.

- :mod:`face3d_data.posmap.uv_assets`    face/weight masks, ``uv_kpt_ind``, ``face_ind``, the
  masked-grid triangulation, and the UV raster that every position map is interpolated over
- :mod:`face3d_data.posmap.crop`         the square crop from 68 landmarks (seeded jitter)
- :mod:`face3d_data.posmap.keypoint_weights` exact keypoint decoding weights (texels + weights)
- :mod:`face3d_data.posmap.position_map` render / decode / store position maps
- :mod:`face3d_data.posmap.sample`       one crop + position map from a projected face
- :mod:`face3d_data.posmap.splits`       identity-based train/val/test splits
- :mod:`face3d_data.posmap.metrics`      keypoint NME and holes, for validation
"""

from face3d_data.posmap.crop import CropBox, crop_image, crop_matrix, landmark_crop_box
from face3d_data.posmap.keypoint_weights import KeypointWeights, keypoint_weights
from face3d_data.posmap.metrics import DECODERS, PosmapCheck, check_posmap, landmark_nme, posmap_defects
from face3d_data.posmap.position_map import (
                                             STORAGE_DTYPES,
                                             apply_affine,
                                             crop_affine,
                                             crop_vertices,
                                             decode_landmarks,
                                             float16_error_bound,
                                             preview_image,
                                             render_position_map,
                                             storage_array,
)
from face3d_data.posmap.sample import (
                                             CoverageError,
                                             PosmapSample,
                                             batch_vertices,
                                             image_coverage,
                                             make_posmap_sample,
                                             projection_affine,
)
from face3d_data.posmap.splits import identity_of, selected_by_key, split_of
from face3d_data.posmap.uv_assets import (
                                             ASSET_FILES,
                                             DEFAULT_WEIGHT_LEVELS,
                                             UVAssets,
                                             build_uv_assets,
                                             check_weight_levels,
                                             triangulate_mask,
                                             uv_to_texels,
                                             write_uv_assets,
)

__all__ = ["CropBox", "crop_image", "crop_matrix", "landmark_crop_box", "crop_vertices",
           "apply_affine", "crop_affine", "KeypointWeights", "keypoint_weights",
           "landmark_nme", "posmap_defects", "DECODERS", "PosmapCheck", "check_posmap",
           "STORAGE_DTYPES", "decode_landmarks", "float16_error_bound", "preview_image",
           "render_position_map", "storage_array", "PosmapSample", "make_posmap_sample",
           "projection_affine", "CoverageError", "batch_vertices", "image_coverage", "identity_of", "split_of",
           "selected_by_key", "DEFAULT_WEIGHT_LEVELS", "ASSET_FILES", "UVAssets", "build_uv_assets",
           "check_weight_levels", "write_uv_assets", "triangulate_mask", "uv_to_texels"]
