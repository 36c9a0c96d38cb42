"""The dlib models: HOG and CNN face detectors and the shape predictors of ``face_recognition_models``.

The ``.dat`` files are located with :func:`importlib.util.find_spec` and never imported as a module
(``face_recognition_models/__init__.py`` needs ``pkg_resources``, which modern setuptools dropped).
Loaded models are cached once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading

from face3d_data.errors import ConfigError

#: dlib's CNN (MMOD) face detector, shipped in face_recognition_models
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"

PREDICTOR_FILES = {
    5: "shape_predictor_5_face_landmarks.dat",
    68: "shape_predictor_68_face_landmarks.dat",
}


def models_folder() -> str:
    """The ``models/`` folder of the installed ``face_recognition_models`` package.

    Raises:
        ConfigError: the package is not installed, or its folder has no ``models/``.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the dlib landmark models are missing: install them with "
            "`pip install face_recognition_models` (they are not downloaded at run time)"
        )
    folder = os.path.join(next(iter(spec.submodule_search_locations)), "models")
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: face_recognition_models has no models/ folder; reinstall it")
    return folder


def predictor_path(n_points: int) -> str:
    """Path of dlib's ``n_points``-point shape predictor (5 or 68)."""
    if n_points not in PREDICTOR_FILES:
        raise ValueError(f"n_points: dlib ships 5- and 68-point predictors, got {n_points}")
    path = os.path.join(models_folder(), PREDICTOR_FILES[n_points])
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: dlib shape predictor missing; reinstall face_recognition_models")
    return path


@functools.cache
def face_detector():
    """dlib's HOG + linear SVM frontal face detector (cached per process)."""
    import dlib

    return dlib.get_frontal_face_detector()


def cnn_detector_path() -> str:
    """Path of dlib's CNN face detector (``mmod_human_face_detector.dat``)."""
    path = os.path.join(models_folder(), CNN_DETECTOR_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: dlib CNN face detector missing; reinstall face_recognition_models")
    return path


_local = threading.local()


def cnn_face_detector():
    """dlib's CNN (MMOD) face detector, one instance per thread (its network keeps per-call buffers,
    so threads never share one; loading takes a few milliseconds)."""
    detector = getattr(_local, "cnn", None)
    if detector is None:
        import dlib

        detector = _local.cnn = dlib.cnn_face_detection_model_v1(cnn_detector_path())
    return detector


@functools.cache
def shape_predictor(n_points: int):
    """dlib's ``n_points``-point shape predictor (cached per process)."""
    import dlib

    return dlib.shape_predictor(predictor_path(n_points))
