"""Deterministic train/val/test splits by face identity.

300W-LP names are ``<subset>_<image id>_<face>_<view k>`` (``IBUG_image_003_1_0``), optionally in a
``*_Flip`` folder and, after ``rotate_300wlp``, with ``_angle_<θ>`` appended. The identity of a
sample is its name without the folder, the ``_angle_<θ>`` suffix and the view index
(``IBUG_image_003_1``), so the views, flips and rotations of one face land in the same split.
Names that do not follow the pattern are their own identity.

The split of an identity is a hash (SHA-1 of ``salt/identity``) mapped to [0, 1), bucketed by
the fractions: independent of listing order, sharding and worker count.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Mapping

_ANGLE = re.compile(r"_angle_-?[0-9.]+$")
_VIEW = re.compile(r"^(?P<face>.+_[0-9]+)_[0-9]+$")


def identity_of(key: str) -> str:
    """The face identity of a sample key (module docstring)."""
    name = str(key).replace("\\", "/").rsplit("/", 1)[-1]
    name = _ANGLE.sub("", name)
    match = _VIEW.match(name)
    return match.group("face") if match else name


def split_of(identity: str, fractions: Mapping[str, float], salt: str = "") -> str:
    """The split an identity belongs to.

    Args:
        identity: from :func:`identity_of`.
        fractions: ``{split name: fraction}``, fractions >= 0 with a positive sum (normalised).
        salt: changes the assignment (e.g. a seed) while keeping it deterministic.
    """
    items = [(str(k), float(v)) for k, v in fractions.items()]
    total = sum(v for _, v in items)
    if not items or any(v < 0 for _, v in items) or not total > 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {dict(fractions)}")
    digest = hashlib.sha1(f"{salt}/{identity}".encode("utf-8", "surrogateescape")).digest()
    x = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    edge = 0.0
    for name, value in items:
        edge += value / total
        if x < edge:
            return name
    return items[-1][0]


def selected_by_key(key: str, every: int) -> bool:
    """Whether the sample ``key`` is one of about one in ``every`` chosen by name (CRC-32 of its
    UTF-8 bytes; file names that are not valid UTF-8 keep their surrogate escapes), e.g. the
    samples that get a preview picture. ``every <= 0`` selects none, 1 all."""
    return every > 0 and zlib.crc32(str(key).encode("utf-8", "surrogateescape")) % every == 0
