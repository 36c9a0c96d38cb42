"""Test helpers: random models of any size and tiny fixtures in the real BFM file formats.

Used by this package's tests, by benchmarks, and by other modules' tests (fitting, posmap, ...).
Nothing here is licensed data: every array is random or synthetic.
"""

from __future__ import annotations

import numpy as np

from face3d_data.morphable.model import MorphableModel


def grid_triangles(rows: int, cols: int) -> np.ndarray:
    """(2·(rows-1)·(cols-1), 3) int32 triangles of a row-major ``rows × cols`` vertex grid."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.int32)


def random_model(n_vertices: int = 500, n_shape: int = 10, n_exp: int = 5, seed: int = 0, *,
                 n_tex: int = 0, convention: str = "raw", with_uv: bool = True) -> MorphableModel:
    """A random, well-formed model in BFM-like units (a face-sized curved sheet, ~1.5e5 wide).

    The vertices lie on a near-square grid (the last row may be partial; triangles only join full
    cells), so triangles, UVs and subsets are meaningful. Basis columns have unit norm with raw
    stds decreasing like BFM's (``shape_std[0] ~ 5e5``); expression stds are O(1) with columns
    scaled to ~1e4 µm displacements, like 3DDFA's. 68 landmarks are distinct random vertices;
    contour lines are 17 short vertex runs.

    Args:
        n_vertices: N >= 68.
        n_shape, n_exp, n_tex: component counts (``n_tex`` 0 = no texture).
        seed: the random seed (same seed, same model).
        convention: "raw" or "normalized" (the normalized one is the raw one converted).
    """
    if n_vertices < 68:
        raise ValueError(f"n_vertices: need at least 68 vertices for the landmarks, got {n_vertices}")
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n_vertices)))
    rows = int(np.ceil(n_vertices / cols))
    idx = np.arange(n_vertices)
    gx = (idx % cols) / max(cols - 1, 1) - 0.5
    gy = 0.5 - (idx // cols) / max(rows - 1, 1)
    mean = np.stack([gx * 1.5e5, gy * 1.8e5, 4e4 * (1 - 2 * gx ** 2 - 2 * gy ** 2)], 1)
    tri = grid_triangles(rows, cols)
    tri = tri[np.all(tri < n_vertices, axis=1)]

    def unit_columns(k):
        b = rng.standard_normal((n_vertices * 3, k)).astype(np.float32)
        b /= np.linalg.norm(b, axis=0, keepdims=True)
        return b.reshape(n_vertices, 3, k)

    shape_std = (5e5 / np.sqrt(np.arange(1, n_shape + 1))).astype(np.float32)
    exp_basis = unit_columns(n_exp) * np.float32(1e4)
    exp_std = (1.5 / np.sqrt(np.arange(1, n_exp + 1))).astype(np.float32)
    kw = {}
    if n_tex:
        kw = dict(tex_mean=np.clip(rng.normal(150, 20, (n_vertices, 3)), 0, 255),
                  tex_basis=unit_columns(n_tex),
                  tex_std=(3e3 / np.sqrt(np.arange(1, n_tex + 1))).astype(np.float32))
    lines = [np.arange(i * 3, i * 3 + 5) % n_vertices for i in range(17)]
    uv = np.stack([gx + 0.5, gy + 0.5], 1) if with_uv else None
    regions = np.where(gx ** 2 + gy ** 2 < 0.16, 1, 0).astype(np.uint8)
    model = MorphableModel(mean, unit_columns(n_shape), shape_std, exp_basis, exp_std,
                           triangles=tri, landmarks=rng.choice(n_vertices, 68, replace=False),
                           uv=uv, regions=regions, contour_lines=lines,
                           name=f"random(seed={seed})", **kw)
    return model.to_convention(convention)


# ---------------------------------------------------------------------------- file fixtures
def smooth_model(n_vertices: int = 3000, n_shape: int = 8, n_exp: int = 4, seed: int = 0, *,
                 cubic: bool = True) -> MorphableModel:
    """A face-like smooth model: :func:`random_model`'s sheet with low-frequency bases.

    The random fixture's bases are white noise per vertex (a rough surface, not a face); position
    maps sample a piecewise-linear surface, so faces are modelled smooth: each basis is a random
    polynomial of the vertex x, y (degree 2, plus x³ and y³ with ``cubic``). Shape std 5e3,
    expression std 1 (amplitude 3e3); landmarks are 68 interior vertices of the face region.
    """
    base = random_model(n_vertices, 1, 1, seed=seed)
    rng = np.random.default_rng(seed)
    x, y = base.mean[:, 0] / 1.5e5, base.mean[:, 1] / 1.8e5
    terms = [np.ones_like(x), x, y, x * y, x * x, y * y] + ([x ** 3, y ** 3] if cubic else [])
    terms = np.stack(terms, 1)

    def basis(k, amplitude):
        coef = rng.normal(size=(terms.shape[1], 3, k))
        return np.einsum("nt,tck->nck", terms, coef) * amplitude

    interior = np.flatnonzero((np.abs(x) < 0.3) & (np.abs(y) < 0.3))
    return MorphableModel(base.mean, basis(n_shape, 1.0), np.full(n_shape, 5e3),
                          basis(n_exp, 3e3), np.ones(n_exp), triangles=base.triangles,
                          landmarks=rng.choice(interior, 68, replace=False), uv=base.uv,
                          regions=base.regions, name="smooth")


def _interleave(a: np.ndarray) -> np.ndarray:
    """(N, 3) -> (3N, 1) or (N, 3, K) -> (3N, K): x, y, z rows per vertex (the BFM layout)."""
    return a.reshape(a.shape[0] * 3, -1)


class BFMFixture:
    """Tiny files in every BFM-derived format, written by :func:`write_bfm_fixtures`.

    Attributes:
        paths: {"bfm2009", "model_info", "model_expression", "exp_pca_bin", "std_exp",
                "face3d", "deep3d", "3ddfa_dir", "3ddfa_v2", "bfm_uv"} -> Path.
        raw: the raw (untrimmed) arrays: mean (Nr,3), shape_pc (Nr,3,Ks), shape_ev, tex_mu, tex_pc, tex_ev.
        trim: (N,) 0-based trimIndex; keypoints: (68,) 0-based in the trimmed base;
        exp_mu (N,3), exp_pc (N,3,Ke), exp_ev (Ke,); tri (M,3) 0-based trimmed; uv (N,2).
    """


def write_bfm_fixtures(folder, seed: int = 0, n_raw: int = 160, n_trim: int = 130, n_shape: int = 8,
                       n_exp: int = 5, n_tex: int = 6) -> BFMFixture:
    """Write small, random, internally consistent files in each real BFM-derived layout.

    BFM2009 ``01_MorphableModel.mat`` (raw order, ``n_raw`` vertices), 3DDFA ``model_info.mat``
    (``trimIndex``, ``keypoints``, ``tri`` 1-based 3×M), ``Model_Expression.mat``, Deep3D
    ``Exp_Pca.bin`` + ``std_exp.txt``, face3d ``BFM.mat`` (struct ``model``), Deep3D
    ``BFM_model_front.mat`` (the first ``n_trim - 10`` trimmed vertices, ×1e-5), a 3DDFA
    ``train.configs`` folder, a 3DDFA_V2 ``bfm_noneck_v3.pkl`` + ``tri.pkl``, and ``BFM_UV.mat``.
    """
    import pickle
    from pathlib import Path

    import scipy.io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    src = random_model(n_raw, n_shape, n_exp, seed=seed, n_tex=n_tex)
    fx = BFMFixture()
    fx.raw = dict(mean=src.mean.astype(np.float64), shape_pc=src.shape_basis.astype(np.float64),
                  shape_ev=src.shape_std.astype(np.float64), tex_mu=src.tex_mean.astype(np.float64),
                  tex_pc=src.tex_basis.astype(np.float64), tex_ev=src.tex_std.astype(np.float64))
    fx.trim = np.sort(rng.choice(n_raw, n_trim, replace=False))
    remap = np.full(n_raw, -1)
    remap[fx.trim] = np.arange(n_trim)
    t = remap[src.triangles]
    fx.tri = t[np.all(t >= 0, axis=1)]
    fx.keypoints = rng.choice(n_trim - 10, 68, replace=False)  # also inside the Deep3D "front" subset
    fx.exp_mu = rng.normal(0, 1e3, (n_trim, 3))
    fx.exp_pc = rng.normal(0, 1, (n_trim, 3, n_exp))
    fx.exp_pc /= np.linalg.norm(fx.exp_pc.reshape(-1, n_exp), axis=0)
    fx.exp_ev = np.linspace(3.0, 1.0, n_exp)
    fx.uv = rng.uniform(0, 1, (n_trim, 2))
    p = fx.paths = {}

    p["bfm2009"] = folder / "01_MorphableModel.mat"
    scipy.io.savemat(p["bfm2009"], {
        "shapeMU": _interleave(fx.raw["mean"]), "shapePC": _interleave(fx.raw["shape_pc"]),
        "shapeEV": fx.raw["shape_ev"].reshape(-1, 1), "texMU": _interleave(fx.raw["tex_mu"]),
        "texPC": _interleave(fx.raw["tex_pc"]), "texEV": fx.raw["tex_ev"].reshape(-1, 1),
        "tl": (src.triangles + 1).astype(np.float64), "segbin": np.zeros((n_raw, 4))})
    p["model_info"] = folder / "model_info.mat"
    scipy.io.savemat(p["model_info"], {"trimIndex": (fx.trim + 1).reshape(-1, 1).astype(np.float64),
                                       "keypoints": (fx.keypoints + 1).reshape(1, -1).astype(np.float64),
                                       "tri": (fx.tri + 1).T.astype(np.float64)})
    p["model_expression"] = folder / "Model_Expression.mat"
    scipy.io.savemat(p["model_expression"], {"mu_exp": _interleave(fx.exp_mu),
                                             "w_exp": _interleave(fx.exp_pc),
                                             "sigma_exp": fx.exp_ev.reshape(-1, 1)})
    deep = folder / "deep3d"
    deep.mkdir(exist_ok=True)
    p["exp_pca_bin"] = deep / "Exp_Pca.bin"
    with open(p["exp_pca_bin"], "wb") as f:
        f.write(np.int32(n_exp).tobytes())
        f.write(fx.exp_mu.astype(np.float32).ravel().tobytes())
        f.write(_interleave(fx.exp_pc).T.astype(np.float32).tobytes())  # (K, 3N) row-major
    p["std_exp"] = deep / "std_exp.txt"
    p["std_exp"].write_text("\n".join(f"{v:.6f}" for v in fx.exp_ev) + "\n")

    mean_t, pc_t = fx.raw["mean"][fx.trim], fx.raw["shape_pc"][fx.trim]
    p["face3d"] = folder / "BFM.mat"
    scipy.io.savemat(p["face3d"], {"model": {
        "shapeMU": _interleave(mean_t), "shapePC": _interleave(pc_t),
        "shapeEV": fx.raw["shape_ev"].reshape(-1, 1), "expMU": _interleave(fx.exp_mu),
        "expPC": _interleave(fx.exp_pc), "expEV": fx.exp_ev.reshape(-1, 1),
        "texMU": _interleave(fx.raw["tex_mu"][fx.trim]), "texPC": _interleave(fx.raw["tex_pc"][fx.trim]),
        "texEV": fx.raw["tex_ev"].reshape(-1, 1), "tri": (fx.tri + 1).T.astype(np.float64),
        "tri_mouth": np.zeros((3, 0)), "kpt_ind": (fx.keypoints + 1).reshape(1, -1).astype(np.float64)}})

    front = np.arange(n_trim - 10)
    fremap = np.full(n_trim, -1)
    fremap[front] = front
    ft = fremap[fx.tri]
    ft = ft[np.all(ft >= 0, axis=1)]
    p["deep3d"] = folder / "BFM_model_front.mat"
    scipy.io.savemat(p["deep3d"], {
        "meanshape": _interleave(mean_t[front]).T / 1e5,
        "meantex": _interleave(fx.raw["tex_mu"][fx.trim][front]).T,
        "idBase": _interleave(pc_t[front] * fx.raw["shape_ev"]) / 1e5,
        "exBase": _interleave(fx.exp_pc[front] * fx.exp_ev) / 1e5,
        "texBase": _interleave(fx.raw["tex_pc"][fx.trim][front] * fx.raw["tex_ev"]),
        "tri": (ft + 1).astype(np.float64), "keypoints": (fx.keypoints + 1).reshape(1, -1).astype(np.float64),
        "point_buf": np.ones((len(front), 8)), "skinmask": np.ones((1, len(front)))})

    d = p["3ddfa_dir"] = folder / "train.configs"
    d.mkdir(exist_ok=True)
    flat_kp = np.stack([3 * fx.keypoints, 3 * fx.keypoints + 1, 3 * fx.keypoints + 2], 1).ravel()
    np.save(d / "u_shp.npy", _interleave(mean_t).astype(np.float32))
    np.save(d / "u_exp.npy", _interleave(fx.exp_mu).astype(np.float32))
    np.save(d / "w_shp_sim.npy", _interleave(pc_t).astype(np.float32))
    np.save(d / "w_exp_sim.npy", _interleave(fx.exp_pc).astype(np.float32))
    np.save(d / "keypoints_sim.npy", flat_kp.astype(np.int64))
    with open(d / "param_whitening.pkl", "wb") as f:
        std = np.r_[np.ones(12), fx.raw["shape_ev"], fx.exp_ev].astype(np.float32)
        pickle.dump({"param_mean": np.zeros_like(std), "param_std": std}, f, protocol=2)
    scipy.io.savemat(d / "tri.mat", {"tri": (fx.tri + 1).T.astype(np.float64)})

    v2 = folder / "3ddfa_v2"
    v2.mkdir(exist_ok=True)
    p["3ddfa_v2"] = v2 / "bfm_noneck_v3.pkl"
    with open(p["3ddfa_v2"], "wb") as f:
        pickle.dump({"u": _interleave(mean_t + fx.exp_mu).astype(np.float32),
                     "w_shp": _interleave(pc_t).astype(np.float32),
                     "w_exp": _interleave(fx.exp_pc).astype(np.float32),
                     "keypoints": flat_kp.astype(np.int64)}, f, protocol=4)
    with open(v2 / "tri.pkl", "wb") as f:
        pickle.dump(fx.tri.T.astype(np.int32), f, protocol=4)

    p["bfm_uv"] = folder / "BFM_UV.mat"
    scipy.io.savemat(p["bfm_uv"], {"UV": fx.uv})
    return fx
