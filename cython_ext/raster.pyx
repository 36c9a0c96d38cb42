# cython: language_level=3
"""Z-buffer rasterisation kernels, compiled to ``face3d_data._raster``.

These are the hot loops only. The Python wrappers in ``face3d_data.render`` check dtypes,
shapes and contiguity; the kernels check every vertex index (and every triangle id they read) as
they go, for no separate pass over the mesh, and report the first bad one to the wrapper, which
raises. Output buffers need not be initialised: the kernels fill them first.

Semantics (see docs/rendering.md):

- canonical image frame: pixel (x, y) is ``image[y, x]`` and is sampled at the integer point (x, y);
- each vertex's pixel column and row codes (ceil + floor, clamped to the image before any
  integer conversion) are computed once per call; a triangle whose three column codes or three
  row codes are equal holds no pixel centre and is rejected by one comparison, and otherwise its
  clipped bounding box of pixel centres is an integer min/max of the codes (see _centre_code);
- each triangle is set up once in float64: one reciprocal of the doubled area, three edge
  functions;
- the edge function of edge (a, b) at pixel p is cross(a - p, b - p), which swapping a and b
  negates exactly, so two triangles sharing an edge agree bit for bit on it; a pixel exactly on an
  edge belongs to the triangle whose interior lies to the edge's right (x larger), or below it
  when the edge is horizontal (the top-left rule): shared edges are drawn exactly once;
- zero-area triangles and triangles with a non-finite coordinate draw nothing;
- depth is the barycentric interpolation of vertex z, rounded to float32; a pixel is overwritten
  when the new depth is strictly greater (ties keep the earlier triangle).
"""

from libc.math cimport INFINITY, floor
from libc.stdint cimport intptr_t
from libc.stdlib cimport free, malloc
from cython.parallel cimport prange, threadid

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FACE3D_HAVE_OPENMP 1
    #else
    #define FACE3D_HAVE_OPENMP 0
    #endif
    """
    int FACE3D_HAVE_OPENMP

HAVE_OPENMP = bool(FACE3D_HAVE_OPENMP)


cdef inline int _tie_inside(double ax, double ay, double bx, double by) noexcept nogil:
    """Top-left rule for edge a->b of a triangle with positive doubled area.

    The edge function cross(a - p, b - p) grows towards the interior along (ay - by, bx - ax);
    a pixel exactly on the edge belongs to this triangle when that inward normal points right,
    or straight down for a horizontal edge. Exact: differences of float32 values in float64.
    """
    cdef double nx = ay - by
    return (nx > 0) | ((nx == 0) & (bx - ax > 0))


cdef inline double _min3(double a, double b, double c) noexcept nogil:
    cdef double m = a if a < b else b
    return m if m < c else c


cdef inline int _min3i(int a, int b, int c) noexcept nogil:
    cdef int m = a if a < b else b
    return m if m < c else c


cdef inline int _max3i(int a, int b, int c) noexcept nogil:
    cdef int m = a if a > b else b
    return m if m > c else c


cdef inline bint _finite(double v) noexcept nogil:
    return (v - v) == 0.0


cdef inline int _centre_code(double v, int n) noexcept nogil:
    """ceil(v) + floor(v) for v in [0, n - 1]; -1 before the first pixel centre (or NaN) and
    2n - 1 after the last (+-inf included).

    The code is odd strictly between two centres and even on one: ``first`` = ceil(v) =
    (code + 1) >> 1 and ``last`` = floor(v) = code >> 1 (arithmetic shifts), clamped to [0, n]
    and [-1, n - 1]. ceil and floor are monotone, so a triangle's clipped bounding box of pixel
    centres along this axis is ((min code + 1) >> 1, max code >> 1): integer min/max per triangle
    instead of float work. That box is empty exactly when the three codes are equal and odd (all
    vertices between the same two centres, or all beyond the same image border); three equal
    even codes put all vertices on one line, a zero-area triangle. So three equal codes reject a
    triangle without computing its box. NaN triangles are rejected later by the finite test.
    """
    cdef int i
    if v >= 0 and v <= n - 1:
        i = <int>v
        return 2 * i + (i < v)
    if v > n - 1:
        return 2 * n - 1
    return -1


cdef struct Target:
    # where raster_mesh writes; every pointer but depth may be NULL (that output is skipped)
    int width
    float* depth               # (H, W) float32, initialised to -inf: the z-buffer itself
    int* triangle_id           # (H, W) int32, initialised to -1
    float* barycentric         # (H, W, 3) float32, initialised to 0
    const int* triangles       # (M, 3) int32: the mesh, for the attribute rows
    const float* attributes    # (N, C) float32 per-vertex attributes...
    int channels
    float* out                 # ...interpolated into (H, W, C) float32, initialised to background


cdef inline void _shade_pixel(int x, int y, double x0, double y0, double z0, double x1, double y1,
                              double z1, double x2, double y2, double z2, double inv_area,
                              Py_ssize_t t, int k1, int k2, const Target* dst) noexcept nogil:
    """Depth-test pixel centre (x, y) against a positively wound triangle (inv_area > 0).

    Edge function of edge (a, b) at p: cross(a - p, b - p) in float64; a pixel exactly on an edge
    (w == 0) belongs to the triangle by the top-left rule. k1, k2: where the weights of (swapped)
    vertices 1 and 2 go in the input vertex order. Attributes are interpolated with the
    float32-rounded weights in float64, exactly as :func:`interpolate_pixels` does from a stored
    raster, so fused and two-pass rendering agree bit for bit.
    """
    cdef double fx = x, fy = y
    cdef double dx0 = x0 - fx, dx1 = x1 - fx, dx2 = x2 - fx
    cdef double dy0 = y0 - fy, dy1 = y1 - fy, dy2 = y2 - fy
    cdef double w0 = dx1 * dy2 - dy1 * dx2
    cdef double w1 = dx2 * dy0 - dy2 * dx0
    cdef double w2 = dx0 * dy1 - dy0 * dx1
    cdef double w_min, b0, b1, b2
    cdef float zf
    cdef float weight[3]
    cdef Py_ssize_t p
    cdef int c
    cdef const float* a0
    cdef const float* a1
    cdef const float* a2
    cdef float* res
    cdef double g0, g1, g2, v00, v01, v02, v10, v11, v12, v20, v21, v22
    w_min = _min3(w0, w1, w2)   # one branch instead of three (vertices are finite here)
    if w_min < 0:
        return
    if w_min == 0:   # on an edge: the top-left rule decides
        if ((w0 == 0) & (not _tie_inside(x1, y1, x2, y2))) \
                | ((w1 == 0) & (not _tie_inside(x2, y2, x0, y0))) \
                | ((w2 == 0) & (not _tie_inside(x0, y0, x1, y1))):
            return
    b0 = w0 * inv_area
    b1 = w1 * inv_area
    b2 = w2 * inv_area
    zf = <float>(b0 * z0 + b1 * z1 + b2 * z2)
    p = <Py_ssize_t>y * dst.width + x
    if not (zf > dst.depth[p]):
        return
    dst.depth[p] = zf
    weight[0] = <float>b0
    weight[k1] = <float>b1
    weight[k2] = <float>b2
    if dst.triangle_id != NULL:
        dst.triangle_id[p] = <int>t
    if dst.barycentric != NULL:
        dst.barycentric[3 * p] = weight[0]
        dst.barycentric[3 * p + 1] = weight[1]
        dst.barycentric[3 * p + 2] = weight[2]
    if dst.out != NULL:
        a0 = dst.attributes + <Py_ssize_t>dst.triangles[3 * t] * dst.channels
        a1 = dst.attributes + <Py_ssize_t>dst.triangles[3 * t + 1] * dst.channels
        a2 = dst.attributes + <Py_ssize_t>dst.triangles[3 * t + 2] * dst.channels
        res = dst.out + p * dst.channels
        g0 = weight[0]
        g1 = weight[1]
        g2 = weight[2]
        if dst.channels == 3:   # the common case (colours, NCC, positions), unrolled: the nine
            v00 = a0[0]; v01 = a0[1]; v02 = a0[2]   # attributes are read before any store,
            v10 = a1[0]; v11 = a1[1]; v12 = a1[2]   # which may otherwise alias them
            v20 = a2[0]; v21 = a2[1]; v22 = a2[2]
            res[0] = <float>(g0 * v00 + g1 * v10 + g2 * v20)
            res[1] = <float>(g0 * v01 + g1 * v11 + g2 * v21)
            res[2] = <float>(g0 * v02 + g1 * v12 + g2 * v22)
            return
        for c in range(dst.channels):
            res[c] = <float>(g0 * a0[c] + g1 * a1[c] + g2 * a2[c])


cdef void fill_target(const Target* dst, Py_ssize_t n_pixels, float background) noexcept nogil:
    """Initialise the buffers of ``dst`` (n_pixels each): depth -inf, ids -1, barycentrics 0,
    attribute image ``background``."""
    cdef Py_ssize_t p
    for p in range(n_pixels):
        dst.depth[p] = -INFINITY
    if dst.triangle_id != NULL:
        for p in range(n_pixels):
            dst.triangle_id[p] = -1
    if dst.barycentric != NULL:
        for p in range(3 * n_pixels):
            dst.barycentric[p] = 0
    if dst.out != NULL:
        for p in range(n_pixels * dst.channels):
            dst.out[p] = background


cdef Py_ssize_t raster_mesh(const float* vertices, Py_ssize_t n_vertices, const int* triangles,
                            Py_ssize_t n_triangles, int height, const Target* dst,
                            long long* codes) noexcept nogil:
    """Z-buffer ``n_triangles`` triangles into the buffers of ``dst``, initialised by the caller.

    vertices: (N, 3) float32 C order; triangles: (M, 3) int32 C order; image height x dst.width;
    codes: scratch for at least N int64. Returns -1, or the first triangle with a vertex index
    outside [0, N) (drawing stops there: the buffers then hold a partial image).

    Edge function of edge (a, b) at pixel p: cross(a - p, b - p) in float64. Swapping a and b
    negates it exactly, so the two triangles of a shared edge agree bit for bit on which side a
    pixel centre lies; ties (exactly 0) go by the top-left rule.
    """
    cdef Py_ssize_t t, v
    cdef size_t n = <size_t>n_vertices
    cdef int width = dst.width
    cdef int i0, i1, i2, px0, px1, py0, py1, x, y, k1, k2
    cdef long long c0, c1, c2, same
    cdef double x0, y0, z0, x1, y1, z1, x2, y2, z2, tmp, area2, inv_area
    # a private copy: int stores into the id buffer cannot then alias width/channels, so the
    # compiler keeps the target's fields in registers across pixels
    cdef Target target = dst[0]
    # per vertex: column code << 32 | row code (see _centre_code), 8 bytes so that the codes of a
    # face mesh stay in the L2 cache while the triangles stream past
    for v in range(n_vertices):
        codes[v] = (<long long>_centre_code(vertices[3 * v], width) << 32) \
            | <unsigned int>_centre_code(vertices[3 * v + 1], height)

    for t in range(n_triangles):
        i0 = triangles[3 * t]
        i1 = triangles[3 * t + 1]
        i2 = triangles[3 * t + 2]
        # the index check: a negative int converts to a huge size_t, so one compare per vertex
        if (<size_t>i0 >= n) | (<size_t>i1 >= n) | (<size_t>i2 >= n):
            return t
        c0 = codes[i0]
        c1 = codes[i1]
        c2 = codes[i2]
        # no pixel centre in the box: equal column codes or equal row codes (see _centre_code)
        same = (c0 ^ c1) | (c0 ^ c2)
        if ((same >> 32) == 0) | (<unsigned int>same == 0):
            continue
        # bounding box of pixel centres, clipped to the image, in integers
        px0 = (_min3i(<int>(c0 >> 32), <int>(c1 >> 32), <int>(c2 >> 32)) + 1) >> 1
        px1 = _max3i(<int>(c0 >> 32), <int>(c1 >> 32), <int>(c2 >> 32)) >> 1
        py0 = (_min3i(<int>c0, <int>c1, <int>c2) + 1) >> 1
        py1 = _max3i(<int>c0, <int>c1, <int>c2) >> 1   # unequal codes: px0 <= px1, py0 <= py1

        x0 = vertices[3 * i0]; y0 = vertices[3 * i0 + 1]
        x1 = vertices[3 * i1]; y1 = vertices[3 * i1 + 1]
        x2 = vertices[3 * i2]; y2 = vertices[3 * i2 + 1]
        z0 = vertices[3 * i0 + 2]; z1 = vertices[3 * i1 + 2]; z2 = vertices[3 * i2 + 2]
        # one test for NaN/inf in any of the nine values (a sum of float32 values cannot overflow)
        if not _finite(((x0 + y0) + (x1 + y1)) + ((x2 + y2) + (z0 + (z1 + z2)))):
            continue

        area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area2 == 0.0:
            continue
        k1 = 1; k2 = 2
        if area2 < 0:   # make the winding positive: swap vertices 1 and 2 (and their outputs)
            tmp = x1; x1 = x2; x2 = tmp
            tmp = y1; y1 = y2; y2 = tmp
            tmp = z1; z1 = z2; z2 = tmp
            k1 = 2; k2 = 1
            area2 = -area2
        inv_area = 1.0 / area2
        # most triangles of a dense face mesh have a single candidate pixel: skip the loops
        if (px0 == px1) & (py0 == py1):
            _shade_pixel(px0, py0, x0, y0, z0, x1, y1, z1, x2, y2, z2, inv_area, t, k1, k2, &target)
            continue
        for y in range(py0, py1 + 1):
            for x in range(px0, px1 + 1):
                _shade_pixel(x, y, x0, y0, z0, x1, y1, z1, x2, y2, z2, inv_area, t, k1, k2, &target)
    return -1


cdef Py_ssize_t interpolate_pixels(const float* attributes, Py_ssize_t n_vertices, int channels,
                                   const int* triangles, Py_ssize_t n_triangles,
                                   const int* triangle_id, const float* barycentric,
                                   Py_ssize_t n_pixels, float background, float* out) noexcept nogil:
    """out[p, c] = sum_k bary[p, k] * attributes[tri[id[p], k], c]; background where id < 0.

    Returns -1, or the first pixel whose id is >= n_triangles or whose triangle has a vertex index
    outside [0, n_vertices) (``out`` is then partly written).
    """
    cdef Py_ssize_t p, t
    cdef int c, i0, i1, i2
    cdef size_t n = <size_t>n_vertices
    cdef const float* a0
    cdef const float* a1
    cdef const float* a2
    cdef double b0, b1, b2, v00, v01, v02, v10, v11, v12, v20, v21, v22
    for p in range(n_pixels):
        t = triangle_id[p]
        if t < 0:
            for c in range(channels):
                out[p * channels + c] = background
            continue
        if t >= n_triangles:
            return p
        i0 = triangles[3 * t]
        i1 = triangles[3 * t + 1]
        i2 = triangles[3 * t + 2]
        if (<size_t>i0 >= n) | (<size_t>i1 >= n) | (<size_t>i2 >= n):
            return p
        a0 = attributes + <Py_ssize_t>i0 * channels
        a1 = attributes + <Py_ssize_t>i1 * channels
        a2 = attributes + <Py_ssize_t>i2 * channels
        b0 = barycentric[3 * p]; b1 = barycentric[3 * p + 1]; b2 = barycentric[3 * p + 2]
        if channels == 3:   # unrolled, as in _shade_pixel (same arithmetic)
            v00 = a0[0]; v01 = a0[1]; v02 = a0[2]
            v10 = a1[0]; v11 = a1[1]; v12 = a1[2]
            v20 = a2[0]; v21 = a2[1]; v22 = a2[2]
            out[3 * p] = <float>(b0 * v00 + b1 * v10 + b2 * v20)
            out[3 * p + 1] = <float>(b0 * v01 + b1 * v11 + b2 * v21)
            out[3 * p + 2] = <float>(b0 * v02 + b1 * v12 + b2 * v22)
            continue
        for c in range(channels):
            out[p * channels + c] = <float>(b0 * a0[c] + b1 * a1[c] + b2 * a2[c])
    return -1


ctypedef fused point_t:
    float
    double

ctypedef fused affine_out_t:
    float
    double

cdef extern from *:
    """
    /* Affine map of (N, 3) points, float64 arithmetic ((x*a0 + y*a1) + z*a2) + a3 per output
       column, rounded once to the output type. Points go in blocks of 8 through separate x, y, z
       arrays so that the compiler vectorises across points; each lane does exactly the scalar
       arithmetic (no contraction: the module is built with -ffp-contract=off), so every clone
       below gives the same bits. On x86-64 Linux the function is compiled for AVX-512, AVX2 and
       the baseline, the best one picked at load time (GCC/clang target_clones, glibc ifunc). */
    #if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) \
        && defined(__has_attribute)
    #if __has_attribute(target_clones)
    #define FACE3D_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #endif
    #endif
    #ifndef FACE3D_CLONES
    #define FACE3D_CLONES
    #endif
    #define FACE3D_AFFINE_ROW(P, O, V)                                                            \
        do {                                                                                      \
            double x_ = (P)[3 * (V)], y_ = (P)[3 * (V) + 1], z_ = (P)[3 * (V) + 2];               \
            (O)[3 * (V)] = (((x_ * a00 + y_ * a01) + z_ * a02) + a03);                            \
            (O)[3 * (V) + 1] = (((x_ * a10 + y_ * a11) + z_ * a12) + a13);                        \
            (O)[3 * (V) + 2] = (((x_ * a20 + y_ * a21) + z_ * a22) + a23);                        \
        } while (0)
    #define FACE3D_AFFINE(NAME, TIN, TOUT)                                                        \
    FACE3D_CLONES static Py_ssize_t NAME(const TIN* __restrict p, Py_ssize_t n,                   \
                                         const double* __restrict a, TOUT* __restrict o) {        \
        const double a00 = a[0], a01 = a[1], a02 = a[2], a03 = a[3];                              \
        const double a10 = a[4], a11 = a[5], a12 = a[6], a13 = a[7];                              \
        const double a20 = a[8], a21 = a[9], a22 = a[10], a23 = a[11];                            \
        Py_ssize_t v = 0, k;                                                                      \
        double x[8], y[8], z[8];                                                                  \
        TOUT check[16] = {0};                                                                     \
        TOUT r0[8], r1[8], r2[8];                                                                 \
        for (; v + 8 <= n; v += 8) {                                                              \
            for (k = 0; k < 8; k++) {                                                             \
                x[k] = p[3 * (v + k)]; y[k] = p[3 * (v + k) + 1]; z[k] = p[3 * (v + k) + 2];      \
            }                                                                                     \
            for (k = 0; k < 8; k++) r0[k] = (TOUT)(((x[k] * a00 + y[k] * a01) + z[k] * a02) + a03); \
            for (k = 0; k < 8; k++) r1[k] = (TOUT)(((x[k] * a10 + y[k] * a11) + z[k] * a12) + a13); \
            for (k = 0; k < 8; k++) r2[k] = (TOUT)(((x[k] * a20 + y[k] * a21) + z[k] * a22) + a23); \
            for (k = 0; k < 8; k++) {                                                             \
                o[3 * (v + k)] = r0[k]; o[3 * (v + k) + 1] = r1[k]; o[3 * (v + k) + 2] = r2[k];   \
            }                                                                                     \
        }                                                                                         \
        for (; v < n; v++) FACE3D_AFFINE_ROW(p, o, v);                                            \
        /* finiteness, per lane over the flat output: o - o stays 0 while every value is        \
           finite, NaN after any that is not; then the first such row, if any */                  \
        for (v = 0; v + 16 <= 3 * n; v += 16)                                                     \
            for (k = 0; k < 16; k++) check[k] += o[v + k] - o[v + k];                             \
        for (; v < 3 * n; v++) check[0] += o[v] - o[v];                                           \
        for (k = 0; k < 16; k++)                                                                  \
            if (check[k] != 0) break;                                                             \
        if (k == 16) return -1;                                                                   \
        for (v = 0; v < 3 * n; v++)                                                               \
            if (o[v] - o[v] != 0) return v / 3;                                                   \
        return -1;                                                                                \
    }
    FACE3D_AFFINE(face3d_affine_ff, float, float)
    FACE3D_AFFINE(face3d_affine_fd, float, double)
    FACE3D_AFFINE(face3d_affine_df, double, float)
    FACE3D_AFFINE(face3d_affine_dd, double, double)
    """
    Py_ssize_t face3d_affine_ff(const float* p, Py_ssize_t n, const double* a, float* o) noexcept nogil
    Py_ssize_t face3d_affine_fd(const float* p, Py_ssize_t n, const double* a, double* o) noexcept nogil
    Py_ssize_t face3d_affine_df(const double* p, Py_ssize_t n, const double* a, float* o) noexcept nogil
    Py_ssize_t face3d_affine_dd(const double* p, Py_ssize_t n, const double* a, double* o) noexcept nogil


cdef extern from *:
    """
    /* out[p, c] = (b0*a[i0, c] + b1*a[i1, c]) + b2*a[i2, c] in float64, rounded to float32, from
       a per-pixel plan of vertex ids (i0 < 0: background) and weights: interpolate_pixels'
       arithmetic without the triangle lookup and its checks (done once, when the plan is made). */
    static void face3d_interpolate_planned3(const float* __restrict a, const int* __restrict ids,
                                            const float* __restrict w, Py_ssize_t n_pixels,
                                            float background, float* __restrict out) {
        for (Py_ssize_t p = 0; p < n_pixels; p++) {
            const int i0 = ids[3 * p];
            if (i0 < 0) {
                out[3 * p] = background; out[3 * p + 1] = background; out[3 * p + 2] = background;
                continue;
            }
            const float* a0 = a + 3 * (Py_ssize_t)i0;
            const float* a1 = a + 3 * (Py_ssize_t)ids[3 * p + 1];
            const float* a2 = a + 3 * (Py_ssize_t)ids[3 * p + 2];
            const double b0 = w[3 * p], b1 = w[3 * p + 1], b2 = w[3 * p + 2];
            const double v00 = a0[0], v01 = a0[1], v02 = a0[2];
            const double v10 = a1[0], v11 = a1[1], v12 = a1[2];
            const double v20 = a2[0], v21 = a2[1], v22 = a2[2];
            out[3 * p] = (float)(b0 * v00 + b1 * v10 + b2 * v20);
            out[3 * p + 1] = (float)(b0 * v01 + b1 * v11 + b2 * v21);
            out[3 * p + 2] = (float)(b0 * v02 + b1 * v12 + b2 * v22);
        }
    }
    static void face3d_interpolate_planned(const float* __restrict a, int channels,
                                           const int* __restrict ids, const float* __restrict w,
                                           Py_ssize_t n_pixels, float background,
                                           float* __restrict out) {
        if (channels == 3) {   /* colours, NCC, positions: unrolled */
            face3d_interpolate_planned3(a, ids, w, n_pixels, background, out);
            return;
        }
        for (Py_ssize_t p = 0; p < n_pixels; p++) {
            int i0 = ids[3 * p];
            if (i0 < 0) {
                for (int c = 0; c < channels; c++) out[p * channels + c] = background;
                continue;
            }
            const float* a0 = a + (Py_ssize_t)i0 * channels;
            const float* a1 = a + (Py_ssize_t)ids[3 * p + 1] * channels;
            const float* a2 = a + (Py_ssize_t)ids[3 * p + 2] * channels;
            double b0 = w[3 * p], b1 = w[3 * p + 1], b2 = w[3 * p + 2];
            for (int c = 0; c < channels; c++)
                out[p * channels + c] = (float)(b0 * a0[c] + b1 * a1[c] + b2 * a2[c]);
        }
    }
    """
    void face3d_interpolate_planned(const float* a, int channels, const int* ids, const float* w,
                                    Py_ssize_t n_pixels, float background, float* out) noexcept nogil


cdef inline int _clampi(int v, int hi) noexcept nogil:
    if v < 0: return 0
    if v > hi: return hi
    return v


cdef void sample_bilinear(const float* texture, int tex_h, int tex_w, int channels,
                          const float* coords, const int* valid, Py_ssize_t n_pixels,
                          float background, float* out) noexcept nogil:
    """Bilinear sampling at texel coordinates (u = column, v = row, centres at integers),
    edge-clamped. coords: (P, 2) float32; valid: (P,) int32 (0 -> background)."""
    cdef Py_ssize_t p
    cdef int c, u0, v0, u1, v1
    cdef double u, v, fu, fv, fu0, fv0
    cdef const float* t00
    cdef const float* t01
    cdef const float* t10
    cdef const float* t11
    for p in range(n_pixels):
        if not valid[p]:
            for c in range(channels):
                out[p * channels + c] = background
            continue
        u = coords[2 * p]
        v = coords[2 * p + 1]
        if u < 0: u = 0
        if u > tex_w - 1: u = tex_w - 1
        if v < 0: v = 0
        if v > tex_h - 1: v = tex_h - 1
        fu0 = floor(u); fv0 = floor(v)
        fu = u - fu0; fv = v - fv0
        u0 = <int>fu0; v0 = <int>fv0
        u1 = _clampi(u0 + 1, tex_w - 1); v1 = _clampi(v0 + 1, tex_h - 1)
        t00 = texture + (<Py_ssize_t>v0 * tex_w + u0) * channels
        t01 = texture + (<Py_ssize_t>v0 * tex_w + u1) * channels
        t10 = texture + (<Py_ssize_t>v1 * tex_w + u0) * channels
        t11 = texture + (<Py_ssize_t>v1 * tex_w + u1) * channels
        for c in range(channels):
            out[p * channels + c] = <float>(
                (1 - fv) * ((1 - fu) * t00[c] + fu * t01[c]) + fv * ((1 - fu) * t10[c] + fu * t11[c]))


# ----------------------------------------------------------------------------------------------
# Python entry points. Arguments are already validated (dtype, C order, shapes); index ranges are
# checked by the kernels, which return the first bad item (-1 = none) for the wrapper to report.

cdef Target _target(int width, float* depth, int* triangle_id, float* barycentric,
                    const int* triangles, const float* attributes, int channels,
                    float* out) noexcept nogil:
    cdef Target dst
    dst.width = width
    dst.depth = depth
    dst.triangle_id = triangle_id
    dst.barycentric = barycentric
    dst.triangles = triangles
    dst.attributes = attributes
    dst.channels = channels
    dst.out = out if channels > 0 else NULL
    return dst


def rasterize_into(const float[:, ::1] vertices, const int[:, ::1] triangles,
                   float[:, ::1] depth, int[:, ::1] triangle_id=None,
                   float[:, :, ::1] barycentric=None, const float[:, ::1] attributes=None,
                   float[:, :, ::1] out=None, float background=0):
    """Z-buffer a mesh into (H, W) buffers (GIL released); returns -1 or the first bad triangle.

    The buffers need not be initialised: they are filled first (depth -inf, ids -1, barycentrics
    0, ``out`` background), in the same nogil section. depth is required; triangle_id /
    barycentric are filled when given; attributes (N, C) are interpolated into out (H, W, C) when
    both are given. A triangle with a vertex index outside [0, N) stops the drawing and its index
    is returned.
    """
    cdef Py_ssize_t m = triangles.shape[0], bad = -1
    cdef int h = depth.shape[0]
    cdef int w = depth.shape[1]
    cdef int channels = out.shape[2] if (out is not None and attributes is not None) else 0
    if h == 0 or w == 0:
        return -1
    cdef Target dst = _target(
        w, &depth[0, 0], &triangle_id[0, 0] if triangle_id is not None else NULL,
        &barycentric[0, 0, 0] if barycentric is not None else NULL,
        &triangles[0, 0] if m > 0 else NULL,
        &attributes[0, 0] if channels > 0 and attributes.shape[0] > 0 else NULL, channels,
        &out[0, 0, 0] if channels > 0 else NULL)
    cdef long long* codes = NULL
    if m > 0:
        codes = <long long*>malloc(<size_t>(vertices.shape[0] + 1) * sizeof(long long))
        if codes == NULL:
            raise MemoryError("rasterize: cannot allocate the per-vertex scratch")
    with nogil:
        fill_target(&dst, <Py_ssize_t>h * w, background)
        if m > 0:
            bad = raster_mesh(&vertices[0, 0] if vertices.shape[0] > 0 else NULL, vertices.shape[0],
                              &triangles[0, 0], m, h, &dst, codes)
    free(codes)
    return bad


def interpolate_into(const float[:, ::1] attributes, const int[:, ::1] triangles,
                     const int[:, ::1] triangle_id, const float[:, :, ::1] barycentric,
                     float background, float[:, :, ::1] out):
    """Per-pixel barycentric interpolation of per-vertex attributes (GIL released).

    Returns -1, or the first pixel (flat index) whose triangle id is >= M or whose triangle has a
    vertex index outside [0, N).
    """
    cdef Py_ssize_t n = triangle_id.shape[0] * triangle_id.shape[1], bad = -1
    cdef int c = out.shape[2]
    if n == 0 or c == 0:
        return -1
    cdef const float* attr = &attributes[0, 0] if attributes.shape[0] > 0 else NULL
    cdef const int* tri = &triangles[0, 0] if triangles.shape[0] > 0 else NULL
    with nogil:
        bad = interpolate_pixels(attr, attributes.shape[0], c, tri, triangles.shape[0],
                                 &triangle_id[0, 0], &barycentric[0, 0, 0], n, background,
                                 &out[0, 0, 0])
    return bad


def interpolate_planned_into(const float[:, ::1] attributes, const int[:, ::1] vertex_ids,
                             const float[:, ::1] weights, float background, float[:, ::1] out):
    """Per-pixel interpolation from a plan (GIL released): (P, 3) int32 vertex ids per pixel
    (row [-1, -1, -1]: background) and (P, 3) float32 weights, into (P, C) ``out``; the same
    arithmetic as :func:`interpolate_into`. Every id must be in [0, N) (the caller checks the
    plan's largest id against N); nothing is checked here."""
    cdef Py_ssize_t n = vertex_ids.shape[0]
    cdef int c = out.shape[1]
    if n == 0 or c == 0:
        return
    with nogil:
        face3d_interpolate_planned(&attributes[0, 0] if attributes.shape[0] > 0 else NULL, c,
                                   &vertex_ids[0, 0], &weights[0, 0], n, background, &out[0, 0])


def sample_bilinear_into(const float[:, :, ::1] texture, const float[:, :, ::1] coords,
                         const int[:, ::1] valid, float background, float[:, :, ::1] out):
    """Bilinear texture lookup at per-pixel texel coordinates (GIL released)."""
    cdef Py_ssize_t n = valid.shape[0] * valid.shape[1]
    if n == 0 or out.shape[2] == 0:
        return
    with nogil:
        sample_bilinear(&texture[0, 0, 0], texture.shape[0], texture.shape[1], texture.shape[2],
                        &coords[0, 0, 0], &valid[0, 0], n, background, &out[0, 0, 0])


def rasterize_many(list vertices, list triangles, float[:, :, ::1] depth,
                   int[:, :, ::1] triangle_id=None, float[:, :, :, ::1] barycentric=None,
                   list attributes=None, float[:, :, :, ::1] out=None, float background=0,
                   int num_threads=1):
    """Z-buffer B meshes into B images in parallel (OpenMP when compiled with it).

    vertices / triangles / attributes: lists of B validated C-contiguous arrays; the buffers are
    stacked (B, H, W[, 3|C]) and need not be initialised: each image's are filled (depth -inf,
    ids -1, barycentrics 0, ``out`` background) by the thread that renders it, so that work and
    its page faults are spread over the threads too. As in :func:`rasterize_into` only depth is
    required. When ``attributes`` (all with C channels) and ``out`` (B, H, W, C) are given, the
    attributes are interpolated into ``out`` during the z-buffer pass.

    Returns a (B,) intp array: per mesh -1, or its first triangle with a vertex index outside
    [0, N_b) (that image is then partial).
    """
    cdef Py_ssize_t nb = len(vertices), b, max_vertices = 1
    cdef int h = depth.shape[1]
    cdef int w = depth.shape[2]
    cdef Py_ssize_t npix = <Py_ssize_t>h * w
    cdef int channels = out.shape[3] if (out is not None and attributes is not None) else 0
    cdef cnp.ndarray[cnp.intp_t] bad = np.full(nb, -1, np.intp)
    if nb == 0 or npix == 0:
        return bad
    if num_threads < 1 or not FACE3D_HAVE_OPENMP:
        num_threads = 1
    cdef cnp.ndarray[cnp.intp_t] vptr = np.zeros(nb, np.intp)
    cdef cnp.ndarray[cnp.intp_t] tptr = np.zeros(nb, np.intp)
    cdef cnp.ndarray[cnp.intp_t] aptr = np.zeros(nb, np.intp)
    cdef cnp.ndarray[cnp.intp_t] mcount = np.zeros(nb, np.intp)
    cdef cnp.ndarray[cnp.intp_t] ncount = np.zeros(nb, np.intp)
    for b in range(nb):
        vptr[b] = vertices[b].ctypes.data
        tptr[b] = triangles[b].ctypes.data
        mcount[b] = triangles[b].shape[0]
        ncount[b] = vertices[b].shape[0]
        max_vertices = max(max_vertices, ncount[b])
        if channels > 0:
            aptr[b] = attributes[b].ctypes.data
    cdef intptr_t* vp = <intptr_t*>vptr.data
    cdef intptr_t* tp = <intptr_t*>tptr.data
    cdef intptr_t* ap = <intptr_t*>aptr.data
    cdef intptr_t* mc = <intptr_t*>mcount.data
    cdef intptr_t* nc = <intptr_t*>ncount.data
    cdef intptr_t* bp = <intptr_t*>bad.data
    cdef float* dep = &depth[0, 0, 0]
    cdef int* ids = &triangle_id[0, 0, 0] if triangle_id is not None else NULL
    cdef float* bar = &barycentric[0, 0, 0, 0] if barycentric is not None else NULL
    cdef float* res = &out[0, 0, 0, 0] if channels > 0 else NULL
    # one code scratch per thread, reused for all its meshes (no allocation inside the loop);
    # rows padded to a multiple of 8 codes (64 bytes) so two threads never share a cache line
    cdef Py_ssize_t row = (max_vertices + 7) // 8 * 8 + 8
    cdef long long* scratch = <long long*>malloc(<size_t>(num_threads * row) * sizeof(long long))
    if scratch == NULL:
        raise MemoryError("rasterize_many: cannot allocate the per-vertex scratch")
    cdef Target dst
    for b in prange(nb, nogil=True, num_threads=num_threads, schedule="dynamic"):
        dst = _target(w, dep + b * npix, ids + b * npix if ids != NULL else NULL,
                      bar + b * npix * 3 if bar != NULL else NULL, <const int*>tp[b],
                      <const float*>ap[b], channels,
                      res + b * npix * channels if res != NULL else NULL)
        fill_target(&dst, npix, background)
        if mc[b] > 0:
            bp[b] = raster_mesh(<const float*>vp[b], nc[b], <const int*>tp[b], mc[b], h, &dst,
                                scratch + threadid() * row)
    free(scratch)
    return bad


def affine_into(const point_t[:, ::1] points, const double[:, ::1] affine, affine_out_t[:, ::1] out):
    """(N, 3) float32/float64 points -> (N, 3) float32/float64 ``out`` (a separate buffer) under a
    (3, 4) float64 affine: ``((x·a0 + y·a1) + z·a2) + a3`` per output column in float64, rounded
    once (GIL released). Shapes are the caller's to check. Returns -1, or the first row with a
    non-finite output (every row is written all the same)."""
    cdef Py_ssize_t n = points.shape[0], bad = -1
    if n == 0:
        return -1
    with nogil:
        if point_t is float:
            if affine_out_t is float:
                bad = face3d_affine_ff(&points[0, 0], n, &affine[0, 0], &out[0, 0])
            else:
                bad = face3d_affine_fd(&points[0, 0], n, &affine[0, 0], &out[0, 0])
        else:
            if affine_out_t is float:
                bad = face3d_affine_df(&points[0, 0], n, &affine[0, 0], &out[0, 0])
            else:
                bad = face3d_affine_dd(&points[0, 0], n, &affine[0, 0], &out[0, 0])
    return bad


def shift_min_z(float[:, ::1] vertices, const cnp.int64_t[::1] subset):
    """z of every (N, 3) vertex minus the least z of ``vertices[subset]`` (float32 subtraction, in
    place; GIL released). Returns that minimum; nothing is subtracted, and the caller is left to
    do it with numpy, when the minimum is zero (+0 or -0: numpy's choice between them decides the
    sign of a -0 z), or when it returns NaN: an empty subset, an index outside [0, N) or a NaN z."""
    cdef Py_ssize_t n = vertices.shape[0], k, m = subset.shape[0], v
    cdef float z_min = INFINITY, z
    cdef float* p = &vertices[0, 0] if n > 0 else NULL
    cdef const cnp.int64_t* idx = &subset[0] if m > 0 else NULL
    cdef bint ok = m > 0
    with nogil:
        for k in range(m):
            if <cnp.uint64_t>idx[k] >= <cnp.uint64_t>n:
                ok = False
                break
            z = p[3 * idx[k] + 2]
            if not (z >= z_min):   # NaN: stop
                if z != z:
                    ok = False
                    break
                z_min = z
        if ok and z_min != 0:
            for v in range(n):
                p[3 * v + 2] = p[3 * v + 2] - z_min
    return z_min if ok else float("nan")
