"""Faces in photos: detection, 5/68-point landmarks, alignment (canonical frame throughout).

- :func:`detect_faces`, :func:`landmarks68`, :func:`landmarks5`, :func:`detect_landmarks68`,
  :func:`box_from_points5` (dlib HOG + the predictors of ``face_recognition_models``; FAN optional)
- :func:`five_from_68`, :func:`align_img`, :func:`align_transform`, :func:`standard_landmarks_3d5`,
  :func:`arcface_transform`, :func:`pos_fit`, :func:`similarity_fit`

dlib's 68-point model was trained on iBUG 300-W, whose licence excludes commercial use.
"""

from face3d_data.landmarks.align import (ARCFACE_TEMPLATE_112, FIVE_POINT_NAMES, AlignTransform,
                                         align_img, align_transform, arcface_transform, five_from_68,
                                         pos_fit, similarity_fit, standard_landmarks_3d5)
from face3d_data.landmarks.detect import (FaceBox, NoFaceError, box_from_points5, detect_faces,
                                          detect_landmarks68, landmarks5, landmarks68)

__all__ = [
    "FaceBox", "NoFaceError", "detect_faces", "landmarks68", "landmarks5", "detect_landmarks68",
    "box_from_points5", "FIVE_POINT_NAMES", "ARCFACE_TEMPLATE_112", "five_from_68",
    "standard_landmarks_3d5", "pos_fit", "AlignTransform", "align_transform", "align_img",
    "similarity_fit", "arcface_transform",
]
