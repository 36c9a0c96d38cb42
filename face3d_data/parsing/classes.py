"""The face-part class table of parsing maps: ids, names, preview colours.

Class ids are stored as uint8 in label maps (``<name>_parsing.png``) and index the last axis of
one-hot / soft maps. "Left" and "right" are as seen in a frontal image (the viewer's left), the
convention of the iBUG 68-point annotation and of the 5-point names of
:data:`face3d_data.landmarks.align.FIVE_POINT_NAMES`: the left eye is landmarks 36–41 and the left
brow 17–21, on the image's left side when the face looks at the camera (they are the subject's
right eye and brow). A horizontal flip of an image therefore swaps classes 2↔3 and 4↔5
(:data:`FLIP_PERMUTATION`).
"""

from __future__ import annotations

import numpy as np

#: (id, name, preview RGB colour), in id order.
CLASS_TABLE: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (0, "background", (0, 0, 0)),
    (1, "skin", (204, 153, 122)),
    (2, "left_brow", (120, 60, 20)),
    (3, "right_brow", (180, 100, 40)),
    (4, "left_eye", (30, 144, 255)),
    (5, "right_eye", (0, 220, 220)),
    (6, "nose", (255, 200, 0)),
    (7, "upper_lip", (220, 20, 60)),
    (8, "lower_lip", (255, 105, 180)),
    (9, "inner_mouth", (90, 0, 90)),
    (10, "neck", (120, 200, 80)),
)

#: class name -> id
CLASSES: dict[str, int] = {name: cid for cid, name, _ in CLASS_TABLE}
#: class names in id order
CLASS_NAMES: tuple[str, ...] = tuple(name for _, name, _ in CLASS_TABLE)
#: number of classes (background included)
N_CLASSES = len(CLASS_TABLE)
#: (N_CLASSES, 3) uint8 preview colours
COLORS = np.array([c for _, _, c in CLASS_TABLE], np.uint8)
#: ids after a horizontal image flip: ``flipped_map = FLIP_PERMUTATION[label_map[:, ::-1]]``
FLIP_PERMUTATION = np.array([0, 1, 3, 2, 5, 4, 6, 7, 8, 9, 10], np.uint8)


def class_table() -> list[dict]:
    """The table as JSON-ready rows ``{"id", "name", "color"}`` (for manifests and reports)."""
    return [{"id": cid, "name": name, "color": list(color)} for cid, name, color in CLASS_TABLE]
