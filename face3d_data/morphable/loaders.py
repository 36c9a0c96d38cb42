"""Read every common Basel-Face-Model derivative into a :class:`MorphableModel`.

:func:`load_model` detects the format from the file's *content* (its variable names), not its name:

=======================  ==============================================  ===================
format                   needs                                           result
=======================  ==============================================  ===================
native ``.npz``          ``basis_block``, ``mean``, ... (``save``)      as saved
BFM2009                  ``shapeMU shapePC shapeEV`` (+ ``texMU``...)    raw, trimmed with
  ``01_MorphableModel``  and ``info=model_info.mat`` (``trimIndex``,    ``trimIndex``; exp
                         ``keypoints``, ``tri``), ``exp=`` expression   from ``exp=``
face3d ``BFM.mat``       struct ``model`` with ``shapeMU shapePC ...``  raw (expMU folded)
Deep3D front             ``meanshape idBase exBase keypoints tri``       normalized, ×1e5
3DDFA configs (folder)   ``u_shp.npy u_exp.npy w_shp_sim.npy            raw, 40 + 10
                         w_exp_sim.npy keypoints_sim.npy``
3DDFA_V2 ``.pkl``        dict ``u w_shp w_exp keypoints`` (+ ``tri``)    raw, no-neck 38,365
=======================  ==============================================  ===================

Expression files for BFM2009: 3DDFA ``Model_Expression.mat`` (``mu_exp w_exp sigma_exp``; the
mean is folded into the model mean, as face3d does) or Deep3DFaceRecon ``Exp_Pca.bin`` with
``std_exp.txt`` beside it. ``BFM_UV.mat`` (``UV``) is read by :func:`load_uv`. Layouts:
docs/formats.md#morphable-model-files. Indices in files are 1-based (Matlab) unless noted; x, y, z are
interleaved per vertex in every ``3N`` array.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io

from face3d_data.errors import InputError
from face3d_data.morphable.model import MorphableModel
from face3d_data.morphable.safe_pickle import load_pickle

#: What each format needs, used in the "unknown file" error.
FORMAT_NEEDS = {
    "npz": "a .npz written by MorphableModel.save (arrays mean, basis_block, n_shape, ...)",
    "bfm2009": "01_MorphableModel.mat: shapeMU, shapePC, shapeEV (texMU/texPC/texEV, tl optional); "
               "pass info=model_info.mat (trimIndex, keypoints) and exp=Model_Expression.mat or Exp_Pca.bin",
    "face3d": "BFM.mat: a struct 'model' with shapeMU, shapePC, shapeEV, expPC, expEV, tri, kpt_ind",
    "deep3d": "BFM_model_front.mat: meanshape, idBase, exBase, keypoints, tri (meantex, texBase optional)",
    "3ddfa": "a 3DDFA train.configs folder (or one of its files): u_shp.npy, u_exp.npy, w_shp_sim.npy, "
             "w_exp_sim.npy, keypoints_sim.npy (param_whitening.pkl, tri.mat optional)",
    "3ddfa_v2": "bfm_noneck_v3.pkl: a dict with u, w_shp, w_exp, keypoints (tri, or tri.pkl beside it)",
}

_SCALE_DEEP3D = 1e5  # Deep3D stores geometry in BFM units / 1e5


# ---------------------------------------------------------------------------- small helpers
def _rows_to_vertices(a, path, name) -> np.ndarray:
    """(3N,) or (3N, K) interleaved rows -> (N, 3) or (N, 3, K) float32."""
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a.T
    if a.shape[0] % 3:
        raise InputError(path, f"'{name}' has {a.shape[0]} rows, not a multiple of 3 (x,y,z per vertex)")
    n = a.shape[0] // 3
    out = a.reshape(n, 3) if a.ndim == 1 or a.shape[1] == 1 else a.reshape(n, 3, a.shape[1])
    out = out.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(path, f"'{name}' contains NaN or infinite values")
    return out


def _vector(a, path, name, size=None) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64).ravel()
    if size is not None and v.size != size:
        raise InputError(path, f"'{name}' has {v.size} values, expected {size}")
    if not np.all(np.isfinite(v)):
        raise InputError(path, f"'{name}' contains NaN or infinite values")
    return v


def _index(a, path, name, n, one_based=True) -> np.ndarray:
    v = np.asarray(a).ravel()
    if v.size and not np.all(np.isfinite(v.astype(np.float64))):
        raise InputError(path, f"'{name}' contains NaN or infinite values")
    v = v.astype(np.int64) - (1 if one_based else 0)
    if v.size and (v.min() < 0 or v.max() >= n):
        base = "1-based" if one_based else "0-based"
        raise InputError(path, f"'{name}' has indices outside [{int(one_based)}, {n - 1 + one_based}] "
                               f"({base} vertex ids expected for {n} vertices)")
    return v


def _triangles(a, path, name, n, one_based=True) -> np.ndarray:
    t = np.asarray(a)
    if t.ndim != 2 or 3 not in t.shape:
        raise InputError(path, f"'{name}' has shape {t.shape}, expected (M, 3) or (3, M)")
    if t.shape[1] != 3:
        t = t.T
    return _index(t, path, name, n, one_based).reshape(-1, 3).astype(np.int32)


def _read_mat(path) -> dict:
    try:
        data = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except NotImplementedError:
        raise InputError(path, "Matlab v7.3 (HDF5) files are not supported; re-save with '-v7'") from None
    except Exception as exc:
        raise InputError(path, f"not a readable .mat file ({type(exc).__name__}: {exc})") from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _mat_names(path) -> list:
    try:
        return [name for name, _, _ in scipy.io.whosmat(path)]
    except Exception:
        return []


# ---------------------------------------------------------------------------- detection
def detect_format(path: str | os.PathLike) -> str:
    """Name of the model format of ``path`` (a key of :data:`FORMAT_NEEDS`), from its content.

    Raises:
        InputError: unknown content; the message lists what was found and what each format needs.
    """
    p = Path(path)
    if p.is_dir():
        found = sorted(x.name for x in p.iterdir())
        if {"u_shp.npy", "w_shp_sim.npy"} <= set(found):
            return "3ddfa"
        raise _unknown(p, f"a folder holding {found[:20]}")
    if not p.is_file():
        raise InputError(p, "no such file or folder")
    with open(p, "rb") as f:
        head = f.read(128)
    if head.startswith(b"PK"):
        try:
            with np.load(p, allow_pickle=False) as z:
                names = list(z.files)
        except Exception as exc:
            raise InputError(p, f"not a readable .npz ({exc})") from None
        if "basis_block" in names:
            return "npz"
        raise _unknown(p, f"a .npz with arrays {names}")
    if head.startswith(b"\x93NUMPY"):
        if (p.parent / "u_shp.npy").is_file() and (p.parent / "w_shp_sim.npy").is_file():
            return "3ddfa"
        raise _unknown(p, "a single .npy array (3DDFA needs the whole train.configs folder)")
    if head[:1] == b"\x80" or p.suffix == ".pkl":
        obj = load_pickle(p)
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        if isinstance(obj, dict) and {"u", "w_shp", "w_exp"} <= set(obj):
            return "3ddfa_v2"
        raise _unknown(p, f"a pickle holding {keys}")
    names = _mat_names(p)
    if names:
        s = set(names)
        if "model" in s:
            return "face3d"
        if {"shapeMU", "shapePC", "shapeEV"} <= s:
            return "bfm2009"
        if {"meanshape", "idBase", "exBase"} <= s:
            return "deep3d"
        if "UV" in s:
            raise InputError(p, "this is a BFM_UV.mat (UV coordinates, not a model): pass it as uv= "
                                "(--uv) together with a model file")
        raise _unknown(p, f"a .mat with variables {sorted(s)}")
    raise _unknown(p, f"a file starting with {head[:16]!r}")


def _unknown(path, found: str) -> InputError:
    needs = "; ".join(f"{k}: {v}" for k, v in FORMAT_NEEDS.items())
    return InputError(path, f"unknown model format: found {found}. Known formats need — {needs}")


def load_model(path, *, exp=None, info=None, uv=None, name: str | None = None) -> MorphableModel:
    """Load any supported model (see the module table); ``"builtin"`` gives :func:`builtin_model`.

    Args:
        path: model file or folder, or ``"builtin"``.
        exp: BFM2009 only: ``Model_Expression.mat`` or ``Exp_Pca.bin`` (``std_exp.txt`` beside it).
        info: BFM2009 only: ``model_info.mat`` (``trimIndex``, ``keypoints``, ``tri``).
        uv: optional ``BFM_UV.mat`` whose ``UV`` is attached (its row count must match).
        name: model name (default: the file name).
    """
    if isinstance(path, str) and path == "builtin":
        from face3d_data.morphable.builtin import builtin_model
        return builtin_model()
    fmt = detect_format(path)
    if fmt != "bfm2009" and (exp is not None or info is not None):
        raise InputError(path, f"exp=/info= apply to BFM2009 01_MorphableModel.mat only, this is {fmt}")
    if fmt == "npz":
        model = MorphableModel.load(path)
    elif fmt == "bfm2009":
        model = load_bfm2009(path, exp=exp, info=info)
    elif fmt == "face3d":
        model = load_face3d_bfm(path)
    elif fmt == "deep3d":
        model = load_deep3d_front(path)
    elif fmt == "3ddfa":
        model = load_3ddfa_configs(path)
    else:
        model = load_3ddfa_v2(path)
    if uv is not None:
        model = _with(model, uv=load_uv(uv, model.n_vertices))
    if name is not None:
        model.name = name
    return model


def _with(model: MorphableModel, **changes) -> MorphableModel:
    kw = model._arrays()
    kw.update(changes)
    return MorphableModel(**kw)


# ---------------------------------------------------------------------------- formats
def load_uv(path, n_vertices: int | None = None) -> np.ndarray:
    """``BFM_UV.mat`` -> (N, 2) float32 UVs in [0, 1] (u right, v up)."""
    data = _read_mat(path)
    if "UV" not in data:
        raise InputError(path, f"no 'UV' variable (found {sorted(data)})")
    uv = np.asarray(data["UV"], np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        uv = uv.T if uv.ndim == 2 and uv.shape[0] == 2 else uv
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise InputError(path, f"'UV' has shape {uv.shape}, expected (N, 2)")
    if n_vertices is not None and uv.shape[0] != n_vertices:
        raise InputError(path, f"'UV' has {uv.shape[0]} rows but the model has {n_vertices} vertices")
    if not np.all(np.isfinite(uv)):
        raise InputError(path, "'UV' contains NaN or infinite values")
    return uv.astype(np.float32)


def _read_expression(exp, n: int):
    """(mean (N,3), basis (N,3,K), std (K,), fold_mean) from Model_Expression.mat or Exp_Pca.bin."""
    exp = Path(exp)
    if not exp.is_file():
        raise InputError(exp, "no such expression file")
    with open(exp, "rb") as f:
        head = f.read(128)
    if b"MATLAB" in head[:20]:
        data = _read_mat(exp)
        missing = [k for k in ("mu_exp", "w_exp", "sigma_exp") if k not in data]
        if missing:
            raise InputError(exp, f"not a 3DDFA Model_Expression.mat: missing {missing} (found {sorted(data)})")
        mu = _rows_to_vertices(data["mu_exp"], exp, "mu_exp")
        w = _rows_to_vertices(data["w_exp"], exp, "w_exp")
        sigma = _vector(data["sigma_exp"], exp, "sigma_exp", w.shape[2])
        fold = True
    else:
        raw = np.fromfile(exp, dtype=np.uint8)
        if raw.size < 4:
            raise InputError(exp, "Exp_Pca.bin is truncated (no header)")
        k = int(raw[:4].view(np.int32)[0])
        need = 4 + 4 * (3 * n + k * 3 * n)
        if k <= 0 or raw.size != need:
            raise InputError(exp, f"Exp_Pca.bin: {raw.size} bytes do not match exp_dim={k} for "
                                  f"{n} vertices (expected {need})")
        vals = raw[4:].view(np.float32)
        mu = vals[:3 * n].reshape(n, 3)
        w = vals[3 * n:].reshape(k, 3 * n).T.reshape(n, 3, k)  # stored row-major (K, 3N)
        std_path = exp.with_name("std_exp.txt")
        if not std_path.is_file():
            raise InputError(exp, f"std_exp.txt must be beside Exp_Pca.bin ({std_path} not found)")
        try:
            sigma = np.loadtxt(std_path, dtype=np.float64).ravel()
        except ValueError as e:
            raise InputError(std_path, f"not a list of numbers ({e})") from None
        if sigma.size < k:
            raise InputError(std_path, f"{sigma.size} values, expected {k}")
        sigma = sigma[:k]
        fold = False  # Deep3DFaceRecon's BFM_model_front leaves expMU out of meanshape
    if mu.shape[0] != n:
        raise InputError(exp, f"expression model has {mu.shape[0]} vertices, the (trimmed) shape "
                              f"model has {n}; 3DDFA/Deep3D expression files are in the 53,215-vertex order")
    return mu, w, sigma, fold


def load_bfm2009(path, exp=None, info=None) -> MorphableModel:
    """BFM2009 ``01_MorphableModel.mat`` (+ ``model_info.mat`` and an expression file) -> raw model.

    ``shapeEV``/``texEV`` are standard deviations (docs/formats.md#bfm2009). With ``info``, the model is
    trimmed to 53,215 vertices with ``trimIndex`` and gets ``keypoints`` and ``tri``; without it,
    the 68 landmarks are unknown and an error says so.
    """
    data = _read_mat(path)
    mean = _rows_to_vertices(data["shapeMU"], path, "shapeMU")
    n_raw = mean.shape[0]
    pc = _rows_to_vertices(data["shapePC"], path, "shapePC")
    ev = _vector(data["shapeEV"], path, "shapeEV", pc.shape[2])
    tex = {}
    if "texMU" in data:
        tpc = _rows_to_vertices(data["texPC"], path, "texPC")
        tex = dict(tex_mean=_rows_to_vertices(data["texMU"], path, "texMU"), tex_basis=tpc,
                   tex_std=_vector(data["texEV"], path, "texEV", tpc.shape[2]))
    if info is None:
        raise InputError(path, "BFM2009 has no 68-landmark list: pass info=model_info.mat "
                               "(3DDFA; trimIndex + keypoints)")
    inf = _read_mat(info)
    missing = [k for k in ("trimIndex", "keypoints") if k not in inf]
    if missing:
        raise InputError(info, f"not a model_info.mat: missing {missing} (found {sorted(inf)})")
    trim = _index(inf["trimIndex"], info, "trimIndex", n_raw)
    if np.unique(trim).size != trim.size:
        raise InputError(info, "'trimIndex' has duplicate vertex ids")
    n = trim.size
    mean, pc = mean[trim], pc[trim]
    if tex:
        tex = dict(tex_mean=tex["tex_mean"][trim], tex_basis=tex["tex_basis"][trim], tex_std=tex["tex_std"])
    keypoints = _index(inf["keypoints"], info, "keypoints", n)
    if "tri" in inf:
        tri = _triangles(inf["tri"], info, "tri", n)
    elif "tl" in data:
        remap = np.full(n_raw, -1, np.int64)
        remap[trim] = np.arange(n)
        t = remap[_triangles(data["tl"], path, "tl", n_raw)]
        tri = t[np.all(t >= 0, axis=1)].astype(np.int32)
    else:
        tri = None
    if exp is not None:
        mu, w, sigma, fold = _read_expression(exp, n)
        if fold:
            mean = mean + mu
    else:
        w, sigma = np.zeros((n, 3, 0), np.float32), np.zeros(0)
    return MorphableModel(mean, pc, ev, w, sigma, triangles=tri, landmarks=keypoints,
                          convention="raw", name=f"BFM2009 ({Path(path).name}, {n} vertices)", **tex)


def load_face3d_bfm(path) -> MorphableModel:
    """face3d ``BFM.mat`` (struct ``model``): raw units, ``expMU`` folded into the mean (as face3d does)."""
    data = _read_mat(path)
    m = data["model"]
    if m.dtype.names is None:
        raise InputError(path, "'model' is not a struct")
    fields = {k: m[k][0, 0] for k in m.dtype.names}
    missing = [k for k in ("shapeMU", "shapePC", "shapeEV", "expPC", "expEV", "tri", "kpt_ind")
               if k not in fields]
    if missing:
        raise InputError(path, f"face3d BFM.mat struct 'model' lacks {missing} (has {sorted(fields)})")
    mean = _rows_to_vertices(fields["shapeMU"], path, "shapeMU")
    n = mean.shape[0]
    if "expMU" in fields:
        mean = mean + _rows_to_vertices(fields["expMU"], path, "expMU")
    pc = _rows_to_vertices(fields["shapePC"], path, "shapePC")
    epc = _rows_to_vertices(fields["expPC"], path, "expPC")
    tri = _triangles(fields["tri"], path, "tri", n)
    if "tri_mouth" in fields and np.size(fields["tri_mouth"]):
        tri = np.concatenate([tri, _triangles(fields["tri_mouth"], path, "tri_mouth", n)])
    tex = {}
    if "texMU" in fields:
        tpc = _rows_to_vertices(fields["texPC"], path, "texPC")
        tex = dict(tex_mean=_rows_to_vertices(fields["texMU"], path, "texMU"), tex_basis=tpc,
                   tex_std=_vector(fields["texEV"], path, "texEV", tpc.shape[2]))
    return MorphableModel(mean, pc, _vector(fields["shapeEV"], path, "shapeEV", pc.shape[2]),
                          epc, _vector(fields["expEV"], path, "expEV", epc.shape[2]),
                          triangles=tri, landmarks=_index(fields["kpt_ind"], path, "kpt_ind", n),
                          convention="raw", name=f"face3d BFM ({Path(path).name})", **tex)


def load_deep3d_front(path) -> MorphableModel:
    """Deep3DFaceRecon ``BFM_model_front.mat``: normalized bases (PC·σ), rescaled ×1e5 to BFM units.

    The file does not keep the BFM's σ, and the front subset of the PCs is not unit-norm, so
    ``to_convention("raw")`` on this model uses the subset's column norms, not BFM ``shapeEV``:
    its raw coefficients are *not* 300W-LP coefficients.
    """
    data = _read_mat(path)
    missing = [k for k in ("meanshape", "idBase", "exBase", "keypoints", "tri") if k not in data]
    if missing:
        raise InputError(path, f"BFM_model_front.mat lacks {missing} (has {sorted(data)})")
    s = _SCALE_DEEP3D
    mean = _rows_to_vertices(data["meanshape"], path, "meanshape") * s
    n = mean.shape[0]
    idb = _rows_to_vertices(data["idBase"], path, "idBase") * s
    exb = _rows_to_vertices(data["exBase"], path, "exBase") * s
    tex = {}
    if "meantex" in data and "texBase" in data:
        tb = _rows_to_vertices(data["texBase"], path, "texBase")
        tex = dict(tex_mean=_rows_to_vertices(data["meantex"], path, "meantex"), tex_basis=tb,
                   tex_std=np.ones(tb.shape[2], np.float32))
    return MorphableModel(mean, idb, np.ones(idb.shape[2]), exb, np.ones(exb.shape[2]),
                          triangles=_triangles(data["tri"], path, "tri", n),
                          landmarks=_index(data["keypoints"], path, "keypoints", n),
                          convention="normalized", name=f"Deep3DFaceRecon BFM front ({n} vertices)", **tex)


def _keypoints_from_flat_rows(k, path, name, n) -> np.ndarray:
    """3DDFA ``keypoints`` (204 flattened x,y,z row ids, 0-based) -> 68 vertex ids."""
    k = np.asarray(k).ravel().astype(np.int64)
    if k.size != 204:
        raise InputError(path, f"'{name}' has {k.size} values, expected 204 (68 × x,y,z rows)")
    if not np.array_equal(k[1::3], k[0::3] + 1) or np.any(k[0::3] % 3):
        raise InputError(path, f"'{name}' is not a list of x,y,z row triples")
    v = k[0::3] // 3
    if v.max() >= n or v.min() < 0:
        raise InputError(path, f"'{name}' refers to vertices outside the {n}-vertex model")
    return v


def _whitening_stds(path, ks, ke):
    """Shape/expression prior stds from a 3DDFA param_whitening.pkl-like dict, or ones."""
    if path is None or not Path(path).is_file():
        return np.ones(ks), np.ones(ke), False
    obj = load_pickle(path)
    std = None
    if isinstance(obj, dict):
        std = obj.get("param_std", obj.get("std"))
    if std is None or np.size(std) < 12 + ks + ke:
        raise InputError(path, f"expected a dict with 'param_std' (or 'std') of at least {12 + ks + ke} values")
    std = np.asarray(std, np.float64).ravel()
    return std[12:12 + ks], std[12 + ks:12 + ks + ke], True


def load_3ddfa_configs(path) -> MorphableModel:
    """3DDFA ``train.configs`` folder: u_shp + u_exp mean, 40 + 10 "sim" bases (raw units).

    Prior stds come from ``param_whitening.pkl`` (the 62-d ``param_std``) when it is in the folder,
    else they are 1. Triangles come from a ``tri.mat`` (``tri``, 1-based) in the folder, if any.
    """
    folder = Path(path) if Path(path).is_dir() else Path(path).parent

    def npy(name):
        f = folder / name
        if not f.is_file():
            raise InputError(folder, f"3DDFA configs need {name} (not found)")
        try:
            return np.load(f, allow_pickle=False)
        except Exception as exc:
            raise InputError(f, f"not a readable .npy ({exc})") from None

    mean = (_rows_to_vertices(npy("u_shp.npy"), folder / "u_shp.npy", "u_shp")
            + _rows_to_vertices(npy("u_exp.npy"), folder / "u_exp.npy", "u_exp"))
    n = mean.shape[0]
    ws = _rows_to_vertices(npy("w_shp_sim.npy"), folder / "w_shp_sim.npy", "w_shp_sim")
    we = _rows_to_vertices(npy("w_exp_sim.npy"), folder / "w_exp_sim.npy", "w_exp_sim")
    kp = _keypoints_from_flat_rows(npy("keypoints_sim.npy"), folder / "keypoints_sim.npy", "keypoints_sim", n)
    ss, es, found = _whitening_stds(folder / "param_whitening.pkl", ws.shape[2], we.shape[2])
    tri = None
    if (folder / "tri.mat").is_file():
        t = _read_mat(folder / "tri.mat")
        if "tri" in t:
            tri = _triangles(t["tri"], folder / "tri.mat", "tri", n)
    note = "" if found else ", no prior stds (param_whitening.pkl not found)"
    return MorphableModel(mean, ws, ss, we, es, triangles=tri, landmarks=kp, convention="raw",
                          name=f"3DDFA sim ({n} vertices{note})")


def load_3ddfa_v2(path) -> MorphableModel:
    """3DDFA_V2 ``bfm_noneck_v3.pkl`` (restricted unpickler): u, w_shp, w_exp, keypoints, tri.

    Triangles: the pickle's ``tri`` or a ``tri.pkl`` beside it (3DDFA_V2 rebuilt them for the no-neck
    model); prior stds from ``param_mean_std_62d_120x120.pkl`` beside it when present, else 1.
    """
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a dict, found {type(obj).__name__}")
    missing = [k for k in ("u", "w_shp", "w_exp", "keypoints") if k not in obj]
    if missing:
        raise InputError(path, f"3DDFA_V2 model pickle lacks {missing} (has {sorted(obj)})")
    mean = _rows_to_vertices(obj["u"], path, "u")
    n = mean.shape[0]
    ws = _rows_to_vertices(obj["w_shp"], path, "w_shp")
    we = _rows_to_vertices(obj["w_exp"], path, "w_exp")
    kp = _keypoints_from_flat_rows(obj["keypoints"], path, "keypoints", n)
    folder = Path(path).parent
    tri = None
    if (folder / "tri.pkl").is_file():
        tri = _triangles(load_pickle(folder / "tri.pkl"), folder / "tri.pkl", "tri", n, one_based=False)
    elif "tri" in obj:
        tri = _triangles(obj["tri"], path, "tri", n, one_based=False)
    ss, es, found = _whitening_stds(folder / "param_mean_std_62d_120x120.pkl", ws.shape[2], we.shape[2])
    note = "" if found else ", no prior stds"
    return MorphableModel(mean, ws, ss, we, es, triangles=tri, landmarks=kp, convention="raw",
                          name=f"3DDFA_V2 ({Path(path).name}, {n} vertices{note})")


# ---------------------------------------------------------------------------- face3d export, UV fix
def face3d_bfm_fields(model: MorphableModel) -> dict:
    """The ``{"model": struct}`` of a face3d-compatible ``BFM.mat`` (the inverse of :func:`load_face3d_bfm`).

    Raw convention (converted if needed); ``shapeMU`` holds the full mean and ``expMU`` zeros (face3d
    adds them at load); ``tri`` 3×M and ``kpt_ind`` 1-based; ``tri_mouth`` empty; float64 columns.
    """
    if model.triangles is None:
        raise ValueError("model: face3d's BFM.mat needs triangles")
    m = model.to_convention("raw")
    n = m.n_vertices

    def col(a):
        return np.asarray(a, np.float64).reshape(3 * n, -1)

    fields = {"shapeMU": col(m.mean), "shapePC": col(m.shape_basis),
              "shapeEV": m.shape_std.astype(np.float64).reshape(-1, 1),
              "expMU": np.zeros((3 * n, 1)), "expPC": col(m.exp_basis),
              "expEV": m.exp_std.astype(np.float64).reshape(-1, 1),
              "tri": (m.triangles.astype(np.float64) + 1).T, "tri_mouth": np.zeros((3, 0)),
              "kpt_ind": (m.landmarks.astype(np.float64) + 1).reshape(1, -1)}
    if m.tex_mean is not None:
        fields.update(texMU=col(m.tex_mean), texPC=col(m.tex_basis),
                      texEV=m.tex_std.astype(np.float64).reshape(-1, 1))
    return {"model": fields}


#: Vertices (0-based, 53,215 trimmed base) whose BFM_UV values face3d's generate.m replaces.
BFM_UV_BAD_VERTICES = (10031, 10154, 10279)


def fix_bfm_uv(uv: np.ndarray, triangles: np.ndarray, bad=BFM_UV_BAD_VERTICES) -> np.ndarray:
    """Replace the UVs of ``bad`` vertices by the mean UV of their mesh neighbours (face3d's fix).

    Neighbours are the 1-ring through ``triangles``, excluding the bad vertices themselves.
    Returns a fixed copy (N, 2) float32; vertices out of range are an error.
    """
    uv = np.array(uv, dtype=np.float32, copy=True)
    tri = np.asarray(triangles)
    bad = [int(b) for b in bad]
    if max(bad) >= len(uv):
        raise ValueError(f"uv: has {len(uv)} rows, the fix touches vertex {max(bad)}")
    bad_set = set(bad)
    for b in bad:
        ring = np.unique(tri[np.any(tri == b, axis=1)])
        ring = [v for v in ring if v not in bad_set]
        if ring:
            uv[b] = uv[ring].mean(axis=0)
    return uv
