"""Face-part label maps (parsing maps) rendered from a morphable model's per-vertex classes.

- :mod:`face3d_data.parsing.classes`  the class table (ids, names, colours; left = image left)
- :mod:`face3d_data.parsing.regions`  per-vertex classes: the model's regions, the 68 landmarks,
  or a per-vertex class file (:class:`PartLabeller`)
- :mod:`face3d_data.parsing.maps`     hard, one-hot and soft (supersampled) maps by z-buffer,
  colour previews, overlays and preview tiles

File layout of the maps: docs/formats.md#parsing-maps; reading them: :mod:`face3d_data.io.parsing`.
"""

from face3d_data.parsing.classes import (
    CLASS_NAMES,
    CLASS_TABLE,
    CLASSES,
    COLORS,
    FLIP_PERMUTATION,
    N_CLASSES,
    class_table,
)
from face3d_data.parsing.maps import (
    color_map,
    face_box,
    label_map,
    labels_from_raster,
    legend,
    one_hot,
    overlay,
    preview_tile,
    soft_label_map,
)
from face3d_data.parsing.regions import (
    SOURCES,
    PartLabeller,
    below_jaw,
    classes_from_regions,
    landmark_vertex_classes,
    load_vertex_classes,
    mouth_corner_classes,
    part_polygons,
    points_in_polygon,
)

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "CLASS_TABLE",
    "COLORS",
    "FLIP_PERMUTATION",
    "N_CLASSES",
    "SOURCES",
    "PartLabeller",
    "below_jaw",
    "class_table",
    "classes_from_regions",
    "color_map",
    "face_box",
    "label_map",
    "labels_from_raster",
    "landmark_vertex_classes",
    "legend",
    "load_vertex_classes",
    "mouth_corner_classes",
    "one_hot",
    "overlay",
    "part_polygons",
    "points_in_polygon",
    "preview_tile",
    "soft_label_map",
]
