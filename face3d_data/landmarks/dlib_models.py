"""The dlib models: HOG face detector and the shape predictors shipped in ``face_recognition_models``.

The ``.dat`` files are located with :func:`importlib.util.find_spec` and never imported as a module
(``face_recognition_models/__init__.py`` needs ``pkg_resources``, which modern setuptools dropped).
Loaded models are cached once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import os

from face3d_data.errors import ConfigError

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
    folder = os.path.join(list(spec.submodule_search_locations)[0], "models")
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


@functools.lru_cache(maxsize=None)
def face_detector():
    """dlib's HOG + linear SVM frontal face detector (cached per process)."""
    import dlib

    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def shape_predictor(n_points: int):
    """dlib's ``n_points``-point shape predictor (cached per process)."""
    import dlib

    return dlib.shape_predictor(predictor_path(n_points))
