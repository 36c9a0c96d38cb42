"""Multi-view synthetic groups (DF-MVR-style sets): K views of one identity, expression and texture.

A group ``g`` of ``K`` views has the sample names ``<prefix>_<g, 6 digits>_v0 … _v{K-1}``
(:func:`view_key`). Everything the views share comes from seeds derived from (run seed, group)
only, so every view of a group, rendered by any worker or shard, shows the same face:

- shape and texture: :func:`face3d_data.w300lp.synth.identity_rng` of the group (each group is one
  identity; its train/val/test split is :func:`face3d_data.w300lp.synth.identity_split` of it);
- expression: :func:`group_rng`.

What differs per view comes from the view's own generator (the runner's per-item seed): the pose,
the lighting, the background, the face's scale and centre jitter.

Pose sampling of view ``v`` of ``K`` (:func:`view_yaw_interval`, :func:`view_pose`), with
``Y = yaw_range_deg`` and ``F = min(frontal_yaw_deg, Y)``:

- view 0 is near-frontal: yaw uniform in [−F, F], pitch and roll std halved;
- views 1 … K−1 spread over the yaw range: [−Y, Y] is cut into K−1 equal bins and view ``v``'s
  yaw is uniform in bin ``v − 1`` (so for K = 3: view 1 in [−Y, 0], view 2 in [0, Y]), with the
  full pitch / roll jitter (normal, clipped at 2.5σ).

Angles follow ``Pose_Para`` (:mod:`face3d_data.w300lp.pose`): positive yaw turns the model's +x
side towards the camera.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from face3d_data.morphable.model import MorphableModel
from face3d_data.w300lp.synth import PoseDistribution, SynthSample, identity_rng, sample_coefficients, synthesize

_VIEW_KEY = re.compile(r"^(?P<prefix>.*)_(?P<group>\d+)_v(?P<view>\d+)$")


def view_key(prefix: str, group: int, view: int) -> str:
    """Sample name of view ``view`` of group ``group``: ``<prefix>_<group, 6 digits>_v<view>``."""
    return f"{prefix}_{int(group):06d}_v{int(view)}"


def parse_view_key(key: str) -> tuple[int, int]:
    """(group, view) of a :func:`view_key` name (the last path component of ``key``).

    Raises:
        ValueError: not a multi-view sample name.
    """
    m = _VIEW_KEY.match(key.rsplit("/", 1)[-1])
    if m is None:
        raise ValueError(f"{key!r} is not a multi-view sample name <prefix>_<group>_v<view>")
    return int(m.group("group")), int(m.group("view"))


def group_rng(seed: int, group: int) -> np.random.Generator:
    """The generator of what a group shares beyond the identity (its expression): derived from the
    run's ``seed`` and the group number only (independent of :func:`identity_rng`)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(group), 0x6D76]))


def group_coefficients(model: MorphableModel, seed: int, group: int, shape_scale: float = 1.0,
                       exp_scale: float = 1.0) -> dict[str, np.ndarray]:
    """The coefficients every view of ``group`` shares.

    Returns:
        ``{"shape": (Ks,), "tex": (Kt,), "exp": (Ke,)}`` float64, drawn from the model's prior
        (:func:`face3d_data.w300lp.synth.sample_coefficients`): shape then texture from
        :func:`identity_rng` ``(seed, group)``, expression from :func:`group_rng` ``(seed, group)``.
    """
    id_rng = identity_rng(seed, group)
    shape = sample_coefficients(model, id_rng, shape_scale, "shape")
    tex = sample_coefficients(model, id_rng, 1.0, "tex")
    exp = sample_coefficients(model, group_rng(seed, group), exp_scale, "exp")
    return {"shape": shape, "tex": tex, "exp": exp}


def view_yaw_interval(view: int, views: int, yaw_range_deg: float,
                      frontal_yaw_deg: float = 10.0) -> tuple[float, float]:
    """(low, high) yaw in degrees of view ``view`` of ``views`` (see the module docstring).

    With ``views == 1`` the single view uses the whole range [−Y, Y].
    """
    views, view = int(views), int(view)
    if views < 1 or not 0 <= view < views:
        raise ValueError(f"view {view} of {views}: expected 0 <= view < views")
    y = float(yaw_range_deg)
    if views == 1:
        return (-y, y)
    if view == 0:
        f = min(float(frontal_yaw_deg), y)
        return (-f, f)
    width = 2.0 * y / (views - 1)
    low = -y + (view - 1) * width
    return (low, low + width)


def view_pose(base: PoseDistribution, view: int, views: int, frontal_yaw_deg: float = 10.0) -> PoseDistribution:
    """The pose distribution of view ``view`` of ``views``: ``base`` with the view's yaw interval
    (:func:`view_yaw_interval` of ``base.yaw_range_deg``) and, for the near-frontal view 0 of a
    group (``views > 1``), half of ``base``'s pitch and roll std. ``views == 1``: ``base`` itself."""
    if int(views) == 1:
        return base
    interval = view_yaw_interval(view, views, base.yaw_range_deg, frontal_yaw_deg)
    scale = 0.5 if int(view) == 0 else 1.0
    return dataclasses.replace(base, yaw_interval_deg=interval, pitch_std_deg=base.pitch_std_deg * scale,
                               roll_std_deg=base.roll_std_deg * scale)


def synthesize_view(model: MorphableModel, seed: int, group: int, view: int, views: int,
                    rng: np.random.Generator, image_size: int, pose: PoseDistribution,
                    frontal_yaw_deg: float = 10.0, shape_scale: float = 1.0, exp_scale: float = 1.0,
                    background: np.ndarray | None = None, antialias: int = 2) -> SynthSample:
    """Render view ``view`` of group ``group``: the group's coefficients (:func:`group_coefficients`
    of ``seed``) under a pose from :func:`view_pose` of ``pose``, lighting and background from
    ``rng`` (the view's own generator).

    Args:
        seed: the run's seed (the group's coefficients depend on it and ``group`` only).
        rng: the view's generator (pose, lighting, background).
        background: (H, W, 3) uint8 user image to crop from, or None (procedural).
    Returns:
        :class:`face3d_data.w300lp.synth.SynthSample` (labels in the 300W-LP layout).
    """
    coef = group_coefficients(model, seed, group, shape_scale, exp_scale)
    return synthesize(model, rng, image_size, pose=view_pose(pose, view, views, frontal_yaw_deg),
                      shape_para=coef["shape"], tex_para=coef["tex"], exp_para=coef["exp"],
                      background=background, antialias=antialias)


def complete_groups(keys, views: int) -> tuple[list[list[str]], list[int]]:
    """Gather multi-view sample names into groups.

    Args:
        keys: sample names (:func:`view_key`), any order.
        views: K, the views per group.
    Returns:
        (groups, incomplete): each complete group's K keys ordered by view, groups ordered by group
        number; and the sorted group numbers that miss a view (e.g. a failed item).
    """
    by_group: dict[int, dict[int, str]] = {}
    for key in keys:
        group, view = parse_view_key(key)
        by_group.setdefault(group, {})[view] = key
    groups, incomplete = [], []
    for group in sorted(by_group):
        members = by_group[group]
        if sorted(members) == list(range(views)):
            groups.append([members[v] for v in range(views)])
        else:
            incomplete.append(group)
    return groups, incomplete
