"""Assembling a model from licensed files: attach UVs, read a vertex subset.

Used by the ``build_model`` stage; plain functions over :class:`MorphableModel`.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.errors import InputError
from face3d_data.morphable.loaders import _read_mat, _with, fix_bfm_uv, load_uv
from face3d_data.morphable.model import MorphableModel


def read_vertex_subset(path: str | os.PathLike) -> np.ndarray:
    """0-based vertex ids from a file.

    ``.mat``: variable ``idx`` / ``trimIndex`` / ``indices`` / ``index`` (1-based, Matlab, e.g.
    Deep3DFaceRecon's ``BFM_front_idx.mat``); ``.npy`` or text: 0-based ids.

    Returns:
        (K,) int64.
    Raises:
        InputError: naming the file.
    """
    from face3d_data.io import load_npy, read_mat

    path = os.fspath(path)
    if path.endswith(".mat"):
        data = read_mat(path)
        for key in ("idx", "trimIndex", "indices", "index"):
            if key in data:
                return np.asarray(data[key]).ravel().astype(np.int64) - 1
        raise InputError(path, f"no idx/trimIndex/indices variable (found {sorted(data)})")
    if path.endswith(".npy"):
        return np.asarray(load_npy(path)).ravel().astype(np.int64)
    try:
        return np.loadtxt(path, dtype=np.int64).ravel()
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a list of vertex ids ({exc})") from None


def attach_uv(model: MorphableModel, uv_path, info_path=None) -> MorphableModel:
    """``model`` with UVs from a ``BFM_UV.mat``: as stored when the rows match the vertices, else
    trimmed with ``info_path``'s ``trimIndex`` (a 53,490-row file for the 53,215-vertex BFM) and,
    for the real BFM, given face3d's fix of three vertices.

    Raises:
        InputError: a row-count mismatch that cannot be trimmed.
    """
    uv = load_uv(uv_path)
    if len(uv) == model.n_vertices:
        return _with(model, uv=uv)
    if info_path is None:
        raise InputError(uv_path, f"'UV' has {len(uv)} rows, the model {model.n_vertices}; "
                                  f"pass --info model_info.mat to trim a 53,490-row file")
    trim = np.asarray(_read_mat(info_path)["trimIndex"]).ravel().astype(np.int64) - 1
    if trim.max() >= len(uv) or len(trim) != model.n_vertices:
        raise InputError(uv_path, f"cannot trim {len(uv)} UV rows with a {len(trim)}-entry trimIndex "
                                  f"to the model's {model.n_vertices} vertices")
    uv = uv[trim]
    if model.n_vertices == 53215 and model.triangles is not None:  # the real BFM: face3d's fix
        uv = fix_bfm_uv(uv, model.triangles)
    return _with(model, uv=uv)
