"""Faces in photos: detection, 5/68-point landmarks, alignment (canonical frame throughout).

- :func:`find_faces` (HOG, CNN or the HOG-then-CNN cascade), :func:`hog_faces`, :func:`cnn_faces`,
  :func:`detect_faces`, :func:`landmarks68`, :func:`landmarks5`, :func:`detect_landmarks68`,
  :func:`box_from_points5` (dlib's detectors + the predictors of ``face_recognition_models``; FAN optional)
- :func:`roll_search`, :func:`upright_view`: the roll of a CNN face, undone for the predictor
- :func:`landmark_quality`: how plausible 68 landmarks are as a face (a 3DMM fit's residual and prior)
- :func:`five_from_68`, :func:`align_img`, :func:`align_transform`, :func:`standard_landmarks_3d5`,
  :func:`arcface_transform`, :func:`pos_fit`, :func:`similarity_fit`

dlib's 68-point model was trained on iBUG 300-W, whose licence excludes commercial use.
"""

from face3d_data.landmarks.align import (
    ARCFACE_TEMPLATE_112,
    FIVE_POINT_NAMES,
    AlignTransform,
    align_img,
    align_transform,
    arcface_transform,
    five_from_68,
    pos_fit,
    similarity_fit,
    standard_landmarks_3d5,
)
from face3d_data.landmarks.detect import (
    FaceBox,
    FaceSearch,
    NoFaceError,
    box_from_points5,
    cnn_faces,
    detect_faces,
    detect_landmarks68,
    find_faces,
    hog_faces,
    landmarks5,
    landmarks68,
    roll_search,
    upright_view,
)
from face3d_data.landmarks.quality import LandmarkQuality, landmark_quality, quality_score

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "FIVE_POINT_NAMES",
    "AlignTransform",
    "FaceBox",
    "FaceSearch",
    "LandmarkQuality",
    "NoFaceError",
    "align_img",
    "align_transform",
    "arcface_transform",
    "box_from_points5",
    "cnn_faces",
    "detect_faces",
    "detect_landmarks68",
    "find_faces",
    "five_from_68",
    "hog_faces",
    "landmark_quality",
    "landmarks5",
    "landmarks68",
    "pos_fit",
    "quality_score",
    "roll_search",
    "similarity_fit",
    "standard_landmarks_3d5",
    "upright_view",
]
