"""Image files: read as 8-bit RGB in memory, write JPEG/PNG atomically.

Everything in the library works on ``(H, W, 3) uint8`` RGB arrays. Grayscale, RGBA, 16-bit and
CMYK inputs are converted on read; unreadable, empty, truncated or corrupt files raise
:class:`~face3d_data.errors.InputError` naming the file.

JPEGs are decoded strictly (libjpeg-turbo through ``simplejpeg`` with ``strict=True``): damage
inside the compressed data that libjpeg only warns about ("Corrupt JPEG data: ...", which OpenCV
prints without the file name and then returns a partly grey picture) is an error naming the file.
The pixels are the same as OpenCV's decoder gives, and decoding is no slower.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import simplejpeg

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# What dataset folders are scanned for (300W-LP pairs, Deep3DFaceRecon image folders).
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_image_file(name: str) -> bool:
    """True when ``name`` has an image extension (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(root: str | os.PathLike, skip_top=(), exclude=()) -> list[str]:
    """Image files under ``root``, as sorted '/'-separated paths relative to it.

    Hidden folders are not searched, nor the top-level folders named in ``skip_top`` (e.g. the
    ``landmarks/``, ``mask/`` folders a stage writes inside an image folder), nor any folder in
    ``exclude`` (e.g. a stage's own output folder inside ``root``).
    """
    root = os.fspath(root)
    excluded = [os.fspath(e) for e in exclude if e and os.path.isdir(e)]

    def is_excluded(folder):
        return any(os.path.samefile(folder, e) for e in excluded)

    if is_excluded(root):
        return []
    found = []
    for folder, dirs, files in os.walk(root):
        top = os.path.samefile(folder, root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (top and d in skip_top)
                         and not is_excluded(os.path.join(folder, d)))
        for name in sorted(files):
            if is_image_file(name):
                found.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


def _to_rgb8(array: np.ndarray, path: str) -> np.ndarray:
    """Convert a decoded OpenCV array (BGR order, any depth/channels) to RGB uint8."""
    if array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
        array = array.astype(np.uint8)
    elif array.dtype in (np.float32, np.float64):
        array = np.clip(np.nan_to_num(array), 0.0, 1.0)
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(path, f"unsupported image sample type {array.dtype}")
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise InputError(path, f"unsupported number of image channels: {channels}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: a JPEG, PNG or BMP file.

    Returns:
        ``(H, W, 3) uint8`` RGB array, canonical frame (``image[y, x]``, y down).

    Raises:
        InputError: missing, empty, corrupt or truncated file.
    """
    path = os.fspath(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except IsADirectoryError:
        raise InputError(path, "expected an image file, found a folder") from None
    if data.size == 0:
        raise InputError(path, "image file is empty (0 bytes)")
    if path.lower().endswith((".jpg", ".jpeg")) and not _jpeg_is_complete(data):
        raise InputError(path, "JPEG file is truncated (no end-of-image marker)")
    if data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8:
        rgb = _decode_jpeg_strict(data, path)
        if rgb is not None:
            return rgb
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None or array.size == 0:
        raise InputError(path, "not a readable image (corrupt file or unsupported format)")
    return _to_rgb8(array, path)


def _decode_jpeg_strict(data: np.ndarray, path: str) -> np.ndarray | None:
    """Decode a JPEG stream strictly to (H, W, 3) uint8 RGB; None for CMYK/YCCK streams, which are
    only checked here and converted by OpenCV.

    Raises:
        InputError: any decoder warning or error (corrupt entropy-coded data, bad markers).
    """
    buffer = data.tobytes()
    try:
        _, _, _, colorspace = simplejpeg.decode_jpeg_header(buffer)
        if colorspace == "Gray":
            gray = simplejpeg.decode_jpeg(buffer, colorspace="GRAY", strict=True)
            return np.ascontiguousarray(np.repeat(gray.reshape(gray.shape[0], gray.shape[1], 1), 3, axis=2))
        if colorspace in ("CMYK", "YCCK"):
            simplejpeg.decode_jpeg(buffer, colorspace="CMYK", strict=True)
            return None
        return simplejpeg.decode_jpeg(buffer, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise InputError(path, f"corrupt JPEG data ({exc})") from None


def _jpeg_is_complete(data: np.ndarray) -> bool:
    """A JPEG is complete when it starts with SOI and ends with EOI (allowing trailing padding)."""
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return True  # not a JPEG stream at all: let the decoder judge it
    tail = data[-64:].tobytes()
    return b"\xff\xd9" in tail


def encode_image(rgb: np.ndarray, extension: str, quality: int = 95) -> bytes:
    """Encode an RGB image to the bytes of a ``.jpg`` or ``.png`` file (deterministic)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {rgb.dtype}")
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 1):
        bgr = rgb
    else:
        raise ValueError(f"image must be (H, W, 3) or (H, W), got shape {rgb.shape}")
    return encode_bgr(bgr, extension, quality)


def encode_bgr(bgr: np.ndarray, extension: str, quality: int = 95) -> bytes:
    """:func:`encode_image` of an image already in OpenCV's BGR order (or grey): (H, W, 3) or
    (H, W) uint8, unchecked; for callers that keep BGR pictures (e.g. many rotations of one)."""
    extension = extension.lower()
    if extension in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif extension == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        raise ValueError(f"unsupported image extension {extension!r} (use .jpg or .png)")
    ok, buf = cv2.imencode(extension, bgr, params)
    if not ok:
        raise ValueError(f"could not encode image as {extension}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB (or single-channel) uint8 image atomically; format from the extension."""
    path = os.fspath(path)
    write_bytes(path, encode_image(rgb, os.path.splitext(path)[1], quality))


def write_png16(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a single-channel uint16 PNG atomically (e.g. a 16-bit depth visual)."""
    array = np.asarray(array)
    if array.dtype != np.uint16 or array.ndim != 2:
        raise ValueError(f"write_png16 needs a (H, W) uint16 array, got {array.dtype} {array.shape}")
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("could not encode 16-bit PNG")
    write_bytes(path, buf.tobytes())
