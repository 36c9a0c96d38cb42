"""``MorphableModel``: one in-memory representation for every 3D Morphable Model.

A model is a linear shape space over a fixed mesh of ``N`` vertices::

    vertices = mean + shape_basis · shape_para + exp_basis · exp_para        (always)

``mean`` is ``(N, 3)``; ``shape_basis`` is ``(N, 3, Ks)``; ``exp_basis`` is ``(N, 3, Ke)``. The bases
multiply the coefficients directly in every convention; ``shape_std`` / ``exp_std`` are the prior
standard deviations of the coefficients *in the same units*:

- ``convention="raw"``: 300W-LP units. The bases are the BFM principal components (unit
  eigenvectors) and the stds are BFM's ``shapeEV`` (which are standard deviations, not variances).
  A 300W-LP ``Shape_Para`` multiplies the basis directly.
- ``convention="normalized"``: N(0, 1) units. The bases are ``PC · σ`` and the stds are 1.

:meth:`MorphableModel.to_convention` and :meth:`MorphableModel.convert_coefficients` move between the
two. Model space is right-handed (x right, y up, z towards the viewer in the frontal pose), in
BFM-like units (micrometre scale: a face is ~1.5e5 wide), so 300W-LP's ``f ~ 1e-3`` applies.

The shape and expression bases are stored as one C-contiguous ``(3N, Ks + Ke)`` matrix;
``shape_basis`` and ``exp_basis`` are views of it, so :meth:`vertices` is a single matrix product
with no per-call copy of the basis.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.errors import InputError

#: Per-vertex region codes (uint8). ``neck`` is everything that is not face.
REGIONS = {"neck": 0, "face": 1, "eyes": 2, "nose": 3, "mouth": 4}

CONVENTIONS = ("raw", "normalized")

_NPZ_FORMAT_VERSION = 1


def _as_float_array(value, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
    """Validate ``value`` against ``shape`` (None = any length) and finiteness; return a copy-free cast."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a numeric array ({exc})") from None
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _as_index_array(value, name: str, n_vertices: int, dtype=np.int64) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: expected integer vertex indices")
    arr = arr.astype(dtype, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_vertices):
        raise ValueError(f"{name}: vertex indices must lie in [0, {n_vertices}), "
                         f"got range [{arr.min()}, {arr.max()}]")
    return arr


class MorphableModel:
    """A linear 3D Morphable Model (shape + expression, optional texture) over one mesh.

    Args:
        mean: (N, 3) mean shape, model space (x right, y up, z towards the viewer), BFM-like units.
        shape_basis: (N, 3, Ks) identity basis; multiplies ``shape_para`` directly.
        shape_std: (Ks,) prior std of ``shape_para`` in its own units.
        exp_basis: (N, 3, Ke) expression basis (Ke may be 0).
        exp_std: (Ke,) prior std of ``exp_para``.
        tex_mean: optional (N, 3) per-vertex RGB albedo mean, 0-255.
        tex_basis: optional (N, 3, Kt) texture basis (multiplies ``tex_para`` directly).
        tex_std: optional (Kt,) prior std of ``tex_para``.
        triangles: optional (M, 3) int32 vertex indices (0-based). A model without triangles (e.g.
            only the 68 landmark vertices) is valid for fitting.
        landmarks: (68,) int64 vertex indices of the 68 iBUG landmarks, iBUG order (0-based).
        uv: optional (N, 2) texture coordinates in [0, 1], u right, v up (the ``BFM_UV`` convention).
        regions: optional (N,) uint8 codes from :data:`REGIONS`.
        contour_lines: optional list of 17 int arrays: the candidate vertices of each jaw landmark,
            for landmark marching (HPEN ``parallel``).
        convention: ``"raw"`` (300W-LP units) or ``"normalized"`` (N(0,1) units, std = 1).
        name: free text, e.g. ``"BFM2009 (3DDFA trim)"``.
        raw_shape_std / raw_exp_std / raw_tex_std: for a normalized model, the stds that were folded
            into the basis (so :meth:`to_convention` can go back to raw exactly). When omitted, the
            column norms of the basis are used (exact for orthonormal principal components).

    Arrays are stored as float32 (bases in one contiguous block); indices as int64 / int32.
    """

    def __init__(self, mean, shape_basis, shape_std, exp_basis, exp_std, *, tex_mean=None,
                 tex_basis=None, tex_std=None, triangles=None, landmarks, uv=None, regions=None,
                 contour_lines=None, convention: str = "raw", name: str = "",
                 raw_shape_std=None, raw_exp_std=None, raw_tex_std=None):
        self._init(mean, shape_basis, shape_std, exp_basis, exp_std, None, tex_mean=tex_mean,
                   tex_basis=tex_basis, tex_std=tex_std, triangles=triangles, landmarks=landmarks,
                   uv=uv, regions=regions, contour_lines=contour_lines, convention=convention,
                   name=name, raw_shape_std=raw_shape_std, raw_exp_std=raw_exp_std,
                   raw_tex_std=raw_tex_std)

    @classmethod
    def _from_block(cls, mean, block, n_shape, shape_std, exp_std, **kw) -> "MorphableModel":
        """Build around an existing C-contiguous float32 (3N, Ks+Ke) block without copying it."""
        self = cls.__new__(cls)
        n = np.shape(mean)[0]
        ks = int(n_shape)
        shape_basis = block[:, :ks].reshape(n, 3, ks)
        exp_basis = block[:, ks:].reshape(n, 3, block.shape[1] - ks)
        self._init(mean, shape_basis, shape_std, exp_basis, exp_std, block, **kw)
        return self

    def _init(self, mean, shape_basis, shape_std, exp_basis, exp_std, block, *, tex_mean, tex_basis,
              tex_std, triangles, landmarks, uv, regions, contour_lines, convention, name,
              raw_shape_std, raw_exp_std, raw_tex_std):
        mean = _as_float_array(mean, "mean", (None, 3))
        n = mean.shape[0]
        if n == 0:
            raise ValueError("mean: the model has no vertices")
        shape_basis = _as_float_array(shape_basis, "shape_basis", (n, 3, None))
        exp_basis = _as_float_array(exp_basis, "exp_basis", (n, 3, None))
        ks, ke = shape_basis.shape[2], exp_basis.shape[2]
        self.shape_std = _as_float_array(shape_std, "shape_std", (ks,))
        self.exp_std = _as_float_array(exp_std, "exp_std", (ke,))
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
        self.convention = convention
        self.name = str(name)
        self.mean = np.ascontiguousarray(mean)

        # One (3N, Ks+Ke) block; shape_basis / exp_basis are (N, 3, K) views of its columns.
        if block is None or not (block.dtype == np.float32 and block.flags.c_contiguous):
            block = np.empty((3 * n, ks + ke), dtype=np.float32)
            block[:, :ks] = shape_basis.reshape(3 * n, ks)
            block[:, ks:] = exp_basis.reshape(3 * n, ke)
        self._basis_block = block
        self._n_shape = ks

        if tex_mean is not None:
            self.tex_mean = np.ascontiguousarray(_as_float_array(tex_mean, "tex_mean", (n, 3)))
            if tex_basis is None:
                tex_basis = np.zeros((n, 3, 0), np.float32)
            tb = _as_float_array(tex_basis, "tex_basis", (n, 3, None))
            kt = tb.shape[2]
            self._tex_block = np.ascontiguousarray(tb.reshape(3 * n, kt))
            self.tex_std = (np.ones(kt, np.float32) if tex_std is None
                            else _as_float_array(tex_std, "tex_std", (kt,)))
        else:
            if tex_basis is not None or tex_std is not None:
                raise ValueError("tex_basis/tex_std: given without tex_mean")
            self.tex_mean = None
            self._tex_block = None
            self.tex_std = None

        if triangles is None:
            self.triangles = None
        else:
            tri = np.asarray(triangles)
            if tri.ndim != 2 or tri.shape[1] != 3:
                raise ValueError(f"triangles: expected shape (M, 3), got {tri.shape}")
            self.triangles = np.ascontiguousarray(
                _as_index_array(tri, "triangles", n, dtype=np.int32))

        lm = np.asarray(landmarks)
        if lm.shape != (68,):
            raise ValueError(f"landmarks: expected 68 vertex indices (iBUG order), got shape {lm.shape}")
        self.landmarks = _as_index_array(lm, "landmarks", n)

        self.uv = None if uv is None else np.ascontiguousarray(_as_float_array(uv, "uv", (n, 2)))
        if regions is None:
            self.regions = None
        else:
            reg = np.asarray(regions)
            if reg.shape != (n,):
                raise ValueError(f"regions: expected shape ({n},), got {reg.shape}")
            if reg.size and (reg.min() < 0 or reg.max() > max(REGIONS.values())):
                raise ValueError(f"regions: codes must be in {sorted(REGIONS.values())}")
            self.regions = reg.astype(np.uint8)
        if contour_lines is None:
            self.contour_lines = None
        else:
            lines = list(contour_lines)
            if len(lines) != 17:
                raise ValueError(f"contour_lines: expected 17 lines (one per jaw landmark), got {len(lines)}")
            self.contour_lines = [_as_index_array(np.ravel(line), f"contour_lines[{i}]", n)
                                  for i, line in enumerate(lines)]
        self._raw_std = {
            "shape": None if raw_shape_std is None else _as_float_array(raw_shape_std, "raw_shape_std", (ks,)),
            "exp": None if raw_exp_std is None else _as_float_array(raw_exp_std, "raw_exp_std", (ke,)),
            "tex": None if raw_tex_std is None or self.tex_std is None
            else _as_float_array(raw_tex_std, "raw_tex_std", (len(self.tex_std),)),
        }

    # ------------------------------------------------------------------ sizes and views
    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def n_shape(self) -> int:
        return self._n_shape

    @property
    def n_exp(self) -> int:
        return self._basis_block.shape[1] - self._n_shape

    @property
    def n_tex(self) -> int:
        return 0 if self._tex_block is None else self._tex_block.shape[1]

    @property
    def shape_basis(self) -> np.ndarray:
        """(N, 3, Ks) float32 view (no copy) of the identity basis."""
        return self._basis_block[:, :self._n_shape].reshape(self.n_vertices, 3, self._n_shape)

    @property
    def exp_basis(self) -> np.ndarray:
        """(N, 3, Ke) float32 view (no copy) of the expression basis."""
        return self._basis_block[:, self._n_shape:].reshape(self.n_vertices, 3, self.n_exp)

    @property
    def tex_basis(self) -> np.ndarray | None:
        """(N, 3, Kt) float32 view of the texture basis, or None."""
        if self._tex_block is None:
            return None
        return self._tex_block.reshape(self.n_vertices, 3, self.n_tex)

    @property
    def basis_matrix(self) -> np.ndarray:
        """(3N, Ks + Ke) float32: shape then expression columns, rows x,y,z interleaved per vertex."""
        return self._basis_block

    # ------------------------------------------------------------------ evaluation
    def _coefficients(self, para, n: int, name: str):
        """Return ``(para as (B, k) float32 with k <= n, batched)``; ``(None, False)`` for None.

        A 1-D ``(k,)`` vector or a 300W-LP column ``(n, 1)`` is one face; any other 2-D array is a batch.
        """
        if para is None:
            return None, False
        try:
            arr = np.asarray(para, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numeric coefficients") from None
        batched = arr.ndim == 2 and not (arr.shape[1] == 1 and arr.shape[0] == n and n != 1)
        if arr.ndim == 2 and not batched:
            arr = arr[:, 0]
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] > n:
            raise ValueError(f"{name}: expected ({n},), ({n}, 1) or (B, {n}) coefficients "
                             f"(fewer are zero-padded), got shape {np.shape(para)}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        return arr, batched

    def vertices(self, shape_para=None, exp_para=None) -> np.ndarray:
        """Evaluate ``mean + shape_basis·shape_para + exp_basis·exp_para``.

        Args:
            shape_para: (Ks,), (Ks, 1) or (B, Ks) coefficients, or None for zeros. Fewer than Ks
                values are allowed (the leading components; the rest are zero).
            exp_para: (Ke,), (Ke, 1) or (B, Ke), or None.

        Returns:
            (N, 3) float32 for one face, (B, N, 3) float32 for a batch; model space.
            Computed as one matrix product ``(B, K) @ (K, 3N)`` on a view of the stored basis.
        """
        sp, sb = self._coefficients(shape_para, self.n_shape, "shape_para")
        ep, eb = self._coefficients(exp_para, self.n_exp, "exp_para")
        if sp is not None and ep is not None and len(sp) != len(ep):
            if min(len(sp), len(ep)) != 1:
                raise ValueError(f"shape_para/exp_para: batch sizes differ ({len(sp)} vs {len(ep)})")
            b = max(len(sp), len(ep))
            sp, ep = np.broadcast_to(sp, (b, sp.shape[1])), np.broadcast_to(ep, (b, ep.shape[1]))
        n = self.n_vertices
        if sp is not None and ep is not None:
            if sp.shape[1] < self.n_shape:
                sp = np.pad(sp, ((0, 0), (0, self.n_shape - sp.shape[1])))
            coef, start = np.concatenate([sp, ep], axis=1), 0
        elif sp is not None:
            coef, start = sp, 0
        elif ep is not None:
            coef, start = ep, self.n_shape
        else:
            return self.mean.copy()
        block = self._basis_block[:, start:start + coef.shape[1]]
        flat = coef @ block.T  # (B, 3N): one GEMM on a transposed view, no basis copy
        flat += self.mean.reshape(1, 3 * n)
        out = flat.reshape(len(coef), n, 3)
        return out if (sb or eb) else out[0]

    def colors(self, tex_para=None) -> np.ndarray:
        """Per-vertex albedo ``tex_mean + tex_basis·tex_para``, 0-255 float32 (not clipped).

        Args:
            tex_para: (Kt,), (Kt, 1) or (B, Kt) coefficients in this model's units, or None.
        Returns:
            (N, 3) float32, or (B, N, 3) for a batch.
        """
        if self.tex_mean is None:
            raise ValueError(f"model {self.name!r} has no texture (tex_mean is None)")
        tp, batched = self._coefficients(tex_para, self.n_tex, "tex_para")
        n = self.n_vertices
        if tp is None:
            out = self.tex_mean[None].copy()
        else:
            flat = tp @ self._tex_block[:, :tp.shape[1]].T
            flat += self.tex_mean.reshape(1, 3 * n)
            out = flat.reshape(len(tp), n, 3)
        return out if batched else out[0]

    def landmark_vertices(self, vertices: np.ndarray) -> np.ndarray:
        """Pick the 68 landmark rows of (N, 3) or (B, N, 3) vertices."""
        return np.asarray(vertices)[..., self.landmarks, :]

    # ------------------------------------------------------------------ conventions
    def _raw_std_of(self, part: str) -> np.ndarray:
        if self.convention == "raw":
            return {"shape": self.shape_std, "exp": self.exp_std, "tex": self.tex_std}[part]
        if self._raw_std[part] is not None:
            return self._raw_std[part]
        basis = {"shape": self._basis_block[:, :self.n_shape], "exp": self._basis_block[:, self.n_shape:],
                 "tex": self._tex_block}[part]
        return np.linalg.norm(basis, axis=0).astype(np.float32)

    def convert_coefficients(self, para, part: str = "shape", to: str = "normalized") -> np.ndarray:
        """Convert coefficients of ``part`` ("shape"|"exp"|"tex") between conventions.

        ``to="normalized"`` takes raw (300W-LP) coefficients to N(0,1) units (``c / σ``);
        ``to="raw"`` does the inverse (``c · σ``). σ is this model's raw std for that part (for a
        normalized model: the folded-in stds, or the basis column norms). Shape of ``para`` is kept;
        its last axis (or first, for a (K, 1) column) holds the components.
        """
        if part not in ("shape", "exp", "tex"):
            raise ValueError(f"part: expected 'shape', 'exp' or 'tex', got {part!r}")
        if part == "tex" and self.tex_mean is None:
            raise ValueError(f"part: model {self.name!r} has no texture")
        if to not in CONVENTIONS:
            raise ValueError(f"to: expected one of {CONVENTIONS}, got {to!r}")
        sigma = self._raw_std_of(part).astype(np.float64)
        arr = np.asarray(para, dtype=np.float64)
        column = arr.ndim == 2 and arr.shape[1] == 1 and arr.shape[0] > 1
        k = arr.shape[0] if column else arr.shape[-1]
        s = sigma[:k][:, None] if column else sigma[:k]
        return arr / s if to == "normalized" else arr * s

    def to_convention(self, convention: str) -> "MorphableModel":
        """Return a model in ``convention`` with the same geometry (same vertices for equivalent coefficients)."""
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
        if convention == self.convention:
            return self
        sig = {p: self._raw_std_of(p) for p in ("shape", "exp")}
        sig["tex"] = self._raw_std_of("tex") if self.tex_mean is not None else None
        if np.any(sig["shape"] == 0) or np.any(sig["exp"] == 0):
            raise ValueError("cannot convert: a component has zero standard deviation")
        if convention == "normalized":
            scale = {p: s for p, s in sig.items()}
        else:
            scale = {p: None if s is None else 1.0 / s for p, s in sig.items()}
        kw = self._arrays()
        kw["shape_basis"] = self.shape_basis * scale["shape"]
        kw["exp_basis"] = self.exp_basis * scale["exp"]
        if convention == "normalized":
            kw["shape_std"] = np.ones(self.n_shape, np.float32)
            kw["exp_std"] = np.ones(self.n_exp, np.float32)
            kw.update(raw_shape_std=sig["shape"], raw_exp_std=sig["exp"], raw_tex_std=sig["tex"])
        else:
            kw["shape_std"], kw["exp_std"] = sig["shape"], sig["exp"]
            kw.update(raw_shape_std=None, raw_exp_std=None, raw_tex_std=None)
        if self.tex_mean is not None:
            kw["tex_basis"] = self.tex_basis * scale["tex"]
            kw["tex_std"] = np.ones(self.n_tex, np.float32) if convention == "normalized" else sig["tex"]
        kw["convention"] = convention
        return MorphableModel(**kw)

    def _arrays(self) -> dict:
        """Constructor keyword arguments reproducing this model."""
        return dict(mean=self.mean, shape_basis=self.shape_basis, shape_std=self.shape_std,
                    exp_basis=self.exp_basis, exp_std=self.exp_std, tex_mean=self.tex_mean,
                    tex_basis=self.tex_basis, tex_std=self.tex_std, triangles=self.triangles,
                    landmarks=self.landmarks, uv=self.uv, regions=self.regions,
                    contour_lines=self.contour_lines, convention=self.convention, name=self.name,
                    raw_shape_std=self._raw_std["shape"], raw_exp_std=self._raw_std["exp"],
                    raw_tex_std=self._raw_std["tex"])

    def truncated(self, n_shape: int | None = None, n_exp: int | None = None,
                  n_tex: int | None = None) -> "MorphableModel":
        """Return a model keeping only the leading components (e.g. 3DDFA's 40 + 10)."""
        ks = self.n_shape if n_shape is None else int(n_shape)
        ke = self.n_exp if n_exp is None else int(n_exp)
        kt = self.n_tex if n_tex is None else int(n_tex)
        if not (0 <= ks <= self.n_shape and 0 <= ke <= self.n_exp and 0 <= kt <= self.n_tex):
            raise ValueError(f"truncated: counts must not exceed ({self.n_shape}, {self.n_exp}, {self.n_tex})")
        kw = self._arrays()
        kw.update(shape_basis=self.shape_basis[..., :ks], shape_std=self.shape_std[:ks],
                  exp_basis=self.exp_basis[..., :ke], exp_std=self.exp_std[:ke])
        for part, k in (("shape", ks), ("exp", ke), ("tex", kt)):
            if self._raw_std[part] is not None:
                kw[f"raw_{part}_std"] = self._raw_std[part][:k]
        if self.tex_mean is not None:
            kw.update(tex_basis=self.tex_basis[..., :kt], tex_std=self.tex_std[:kt])
        return MorphableModel(**kw)

    # ------------------------------------------------------------------ topology
    def subset(self, vertex_indices, expected_n_vertices: int | None = None) -> "MorphableModel":
        """Keep the vertices ``vertex_indices`` (0-based, unique, in the new order).

        Triangles with all three corners kept are re-indexed (the others dropped); landmarks, UVs,
        regions and contour lines follow. Used for the standard topology maps: 53,490 → 53,215
        (3DDFA ``trimIndex``), 53,215 → 38,365 (3DDFA_V2 no-neck), 53,215 → 35,709 (Deep3D front).

        Args:
            vertex_indices: (N',) int indices into this model's vertices.
            expected_n_vertices: when given, N' must equal it (guards against a wrong index file).

        Raises:
            ValueError: duplicate / out-of-range indices, a count mismatch, or a landmark vertex
                that is not kept.
        """
        idx = np.asarray(vertex_indices).ravel()
        idx = _as_index_array(idx, "vertex_indices", self.n_vertices)
        if idx.size == 0:
            raise ValueError("vertex_indices: empty; a model needs at least one vertex")
        if expected_n_vertices is not None and idx.size != int(expected_n_vertices):
            raise ValueError(f"vertex_indices: expected {expected_n_vertices} indices, got {idx.size}")
        if np.unique(idx).size != idx.size:
            raise ValueError("vertex_indices: contains duplicates")
        remap = np.full(self.n_vertices, -1, np.int64)
        remap[idx] = np.arange(idx.size)
        lm = remap[self.landmarks]
        if np.any(lm < 0):
            missing = self.landmarks[lm < 0]
            raise ValueError(f"vertex_indices: drops landmark vertices {missing.tolist()} "
                             f"(landmarks {np.flatnonzero(lm < 0).tolist()})")
        kw = self._arrays()
        kw["mean"] = self.mean[idx]
        kw["shape_basis"] = self.shape_basis[idx]
        kw["exp_basis"] = self.exp_basis[idx]
        kw["landmarks"] = lm
        if self.tex_mean is not None:
            kw["tex_mean"] = self.tex_mean[idx]
            kw["tex_basis"] = self.tex_basis[idx]
        if self.triangles is not None:
            tri = remap[self.triangles]
            kw["triangles"] = tri[np.all(tri >= 0, axis=1)].astype(np.int32)
        if self.uv is not None:
            kw["uv"] = self.uv[idx]
        if self.regions is not None:
            kw["regions"] = self.regions[idx]
        if self.contour_lines is not None:
            lines = [remap[line][remap[line] >= 0] for line in self.contour_lines]
            for i, (line, old) in enumerate(zip(lines, self.contour_lines)):
                if line.size == 0 and old.size:
                    raise ValueError(f"vertex_indices: drops every vertex of contour line {i}")
            kw["contour_lines"] = lines
        out = MorphableModel(**kw)
        assert out.n_vertices == idx.size
        return out

    # ------------------------------------------------------------------ native file format
    def save(self, path: str | os.PathLike) -> None:
        """Write the compact native format: an uncompressed ``.npz`` of float32 / int arrays (atomic)."""
        from face3d_data.io.atomic import atomic_write

        arrays = {
            "format_version": np.array(_NPZ_FORMAT_VERSION, np.int32),
            "convention": np.array(self.convention), "name": np.array(self.name),
            "mean": self.mean, "basis_block": self._basis_block,
            "n_shape": np.array(self.n_shape, np.int64),
            "shape_std": self.shape_std, "exp_std": self.exp_std,
            "landmarks": self.landmarks,
        }
        optional = {"tex_mean": self.tex_mean, "tex_block": self._tex_block, "tex_std": self.tex_std,
                    "triangles": self.triangles, "uv": self.uv, "regions": self.regions,
                    "raw_shape_std": self._raw_std["shape"], "raw_exp_std": self._raw_std["exp"],
                    "raw_tex_std": self._raw_std["tex"]}
        arrays.update({k: v for k, v in optional.items() if v is not None})
        if self.contour_lines is not None:
            arrays["contour_flat"] = np.concatenate(self.contour_lines).astype(np.int64)
            arrays["contour_offsets"] = np.cumsum([0] + [len(line) for line in self.contour_lines]).astype(np.int64)
        with atomic_write(path, mode="wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MorphableModel":
        """Read a model written by :meth:`save`. Raises ``InputError`` naming the file on any problem."""
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except Exception as exc:  # zipfile / ValueError on a corrupt or foreign file
            raise InputError(path, f"not a readable .npz model ({exc.__class__.__name__}: {exc})") from None
        need = ("format_version", "mean", "basis_block", "n_shape", "shape_std", "exp_std", "landmarks")
        missing = [k for k in need if k not in data]
        if missing:
            raise InputError(path, f"not a face3d-data model .npz: missing arrays {missing} "
                                   f"(found {sorted(data)})")
        if int(data["format_version"]) > _NPZ_FORMAT_VERSION:
            raise InputError(path, f"model format version {int(data['format_version'])} is newer than "
                                   f"this library supports ({_NPZ_FORMAT_VERSION})")
        block = data["basis_block"]
        ks = int(data["n_shape"])
        mean = data["mean"]
        n = mean.shape[0] if mean.ndim == 2 else 0
        try:
            if block.ndim != 2 or block.shape[0] != 3 * n or not 0 <= ks <= block.shape[1]:
                raise ValueError(f"basis_block: shape {block.shape} does not match {n} vertices")
            tex_basis = None
            if "tex_block" in data:
                tex_basis = data["tex_block"].reshape(n, 3, -1)
            lines = None
            if "contour_flat" in data:
                off = data["contour_offsets"]
                lines = [data["contour_flat"][off[i]:off[i + 1]] for i in range(len(off) - 1)]
            return cls._from_block(mean, block, ks, data["shape_std"], data["exp_std"],
                       tex_mean=data.get("tex_mean"), tex_basis=tex_basis, tex_std=data.get("tex_std"),
                       triangles=data.get("triangles"), landmarks=data["landmarks"], uv=data.get("uv"),
                       regions=data.get("regions"), contour_lines=lines,
                       convention=str(data["convention"]), name=str(data["name"]),
                       raw_shape_std=data.get("raw_shape_std"), raw_exp_std=data.get("raw_exp_std"),
                       raw_tex_std=data.get("raw_tex_std"))
        except ValueError as exc:
            raise InputError(path, f"invalid model: {exc}") from None

    def __repr__(self) -> str:
        tri = "no triangles" if self.triangles is None else f"{len(self.triangles)} triangles"
        tex = f", {self.n_tex} texture modes" if self.tex_mean is not None else ""
        return (f"MorphableModel({self.name!r}, {self.n_vertices} vertices, {tri}, "
                f"{self.n_shape} shape + {self.n_exp} expression modes{tex}, {self.convention})")
