"""Optional 68-point landmarks with face-alignment (FAN), weights from a local folder only.

face-alignment normally downloads its weights on first use. Here it never does: the user puts the
files in a folder and names it (``fan_weights``); the folder is handed to ``torch.hub`` as its
checkpoint cache, so face-alignment finds the files and has nothing to fetch. When the package or
the files are missing, :class:`~face3d_data.errors.ConfigError` says what to install and where to
put which file.
"""

from __future__ import annotations

import functools
import glob
import os

import numpy as np

from face3d_data.errors import ConfigError

INSTALL_HINT = "install the optional extra: pip install 'face3d-data[fan]' (face-alignment)"
WEIGHT_PATTERNS = ("2DFAN4*", "s3fd*")
WEIGHTS_HINT = (
    "download the face-alignment weights once, by hand, and put them in one folder: the 2D-FAN "
    "landmark model (a file named 2DFAN4-<hash>.zip) and the S3FD detector (s3fd-<hash>.pth), with "
    "the file names face-alignment uses; then pass that folder as fan_weights "
    "(--fan_weights DIR). Nothing is downloaded at run time."
)


def check_weights_folder(weights_dir) -> str:
    """Validate the local FAN weights folder.

    Returns:
        The folder as an absolute path.
    Raises:
        ConfigError: no folder given, not a folder, or a weight file missing; the message says which
            files to put where.
    """
    if not weights_dir:
        raise ConfigError(f"landmarker 'fan' needs a local weights folder (fan_weights): {WEIGHTS_HINT}")
    folder = os.path.abspath(os.fspath(weights_dir))
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: FAN weights folder does not exist; {WEIGHTS_HINT}")
    missing = [p for p in WEIGHT_PATTERNS if not glob.glob(os.path.join(folder, p))]
    if missing:
        raise ConfigError(f"{folder}: no file matching {', '.join(missing)}; {WEIGHTS_HINT}")
    return folder


def check_fan(weights_dir) -> str:
    """Check, before any image, that FAN can run: the local weights folder and the package.

    Returns:
        The weights folder as an absolute path.
    Raises:
        ConfigError: saying what is missing and how to provide it.
    """
    folder = check_weights_folder(weights_dir)
    _import_face_alignment()
    return folder


def _import_face_alignment():
    try:
        import face_alignment
    except ImportError:
        raise ConfigError(f"landmarker 'fan' needs the face-alignment package: {INSTALL_HINT}") from None
    return face_alignment


@functools.lru_cache(maxsize=2)
def load_fan(weights_dir: str, device: str = "cpu"):
    """A face-alignment ``FaceAlignment`` (2D, 68 points) reading weights from ``weights_dir`` only.

    Raises:
        ConfigError: package missing or weights missing.
    """
    folder = check_weights_folder(weights_dir)
    face_alignment = _import_face_alignment()
    import torch

    # torch.hub looks for checkpoints in <hub dir>/checkpoints: point it at a folder whose
    # checkpoints/ is the user's weights folder, so that the cached-file check always succeeds.
    hub_dir = os.path.join(folder, ".torch_hub")
    link = os.path.join(hub_dir, "checkpoints")
    if not os.path.exists(link):
        os.makedirs(hub_dir, exist_ok=True)
        os.symlink(folder, link)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(hub_dir)
    try:
        landmarks_type = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        return face_alignment.FaceAlignment(landmarks_type, device=device, flip_input=False)
    finally:
        torch.hub.set_dir(previous)


def fan_landmarks68(image_rgb: np.ndarray, box, weights_dir, device: str = "cpu") -> np.ndarray:
    """68 landmarks from FAN for the face in ``box``.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        box: a :class:`~face3d_data.landmarks.detect.FaceBox` (canonical frame).
        weights_dir: local folder with the FAN weights (see :data:`WEIGHTS_HINT`).
    Returns:
        (68, 2) float64, canonical frame.
    """
    fan = load_fan(os.fspath(weights_dir) if weights_dir else "", device)
    boxes = [np.array([box.left, box.top, box.right, box.bottom, max(box.score, 0.0)], np.float32)]
    result = fan.get_landmarks_from_image(image_rgb, detected_faces=boxes)
    if not result:
        raise ValueError("image_rgb: FAN found no landmarks in the given box")
    return np.asarray(result[0], dtype=np.float64)[:, :2]
