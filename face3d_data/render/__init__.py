"""Rasterisation: a validated CPU z-buffer (Cython), attribute/texture rendering and maps.

- :mod:`face3d_data.render.raster`  ``rasterize``, ``interpolate``, ``render_attributes``,
  ``render_texture`` and their batched, multi-threaded forms;
- :mod:`face3d_data.render.maps`    PNCC, depth, normals, per-vertex visibility, UV-space rendering;
- :mod:`face3d_data.render.torch`   a differentiable renderer for torch (CPU, CUDA, nvdiffrast).

Frame: canonical image frame (0-based, x right, y down, pixel centres at integers); z larger = closer.
"""

from face3d_data.render.maps import (
                                       DepthMap,
                                       depth_test_visibility,
                                       depth_visual,
                                       ncc_code,
                                       render_depth,
                                       render_normals,
                                       render_pncc,
                                       render_uv,
                                       stack_faces,
                                       vertex_normals,
                                       vertex_visibility,
)
from face3d_data.render.raster import (
                                       Raster,
                                       interpolate,
                                       rasterize,
                                       rasterize_batch,
                                       render_attributes,
                                       render_attributes_batch,
                                       render_texture,
)

__all__ = ["DepthMap", "depth_test_visibility", "depth_visual", "ncc_code", "render_depth", "render_normals",
           "render_pncc",
           "render_uv", "stack_faces", "vertex_normals", "vertex_visibility",
           "Raster", "rasterize", "interpolate", "render_attributes", "render_texture",
           "rasterize_batch", "render_attributes_batch"]
