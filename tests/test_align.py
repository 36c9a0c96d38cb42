"""Alignment: 5 points from 68, POS fit, the 224 crop transform and the ArcFace similarity."""

import numpy as np
import pytest

from face3d_data.landmarks import align
from face3d_data.morphable.testing import random_model

# A face-like 5-point template in decimetres (model space: x right, y up, z towards the viewer).
FACE_TEMPLATE = np.array(
    [[-0.315, 0.27, -0.05], [0.315, 0.27, -0.05], [0.0, -0.05, 0.25], [-0.24, -0.38, 0.0], [0.24, -0.38, 0.0]]
)


def _rotation(yaw, pitch, roll):
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _project(points3d, scale, t, rot=None):
    """Scaled orthographic projection to the canonical image frame (model y up -> image y down)."""
    rot = np.eye(3) if rot is None else rot
    p = points3d @ rot.T
    return np.stack([scale * p[:, 0] + t[0], -scale * p[:, 1] + t[1]], axis=1)


def test_five_from_68_picks_eye_centres_nose_mouth_corners():
    pts = np.arange(136, dtype=float).reshape(68, 2)
    five = align.five_from_68(pts)
    np.testing.assert_allclose(five[0], (pts[36] + pts[39]) / 2)
    np.testing.assert_allclose(five[1], (pts[42] + pts[45]) / 2)
    np.testing.assert_allclose(five[2:], pts[[30, 48, 54]])
    assert align.five_from_68(np.zeros((68, 3))).shape == (5, 3)


@pytest.mark.parametrize("angles", [(0, 0, 0), (0.4, -0.2, 0.1), (-0.6, 0.1, -0.3)])
def test_pos_fit_recovers_scale_and_origin(angles):
    rng = np.random.default_rng(1)
    pts3 = rng.normal(size=(7, 3))
    pts2 = _project(pts3, 55.0, (130.0, 90.0), _rotation(*angles))
    t, s = align.pos_fit(pts2, pts3)
    np.testing.assert_allclose(t, [130.0, 90.0], atol=1e-9)
    assert s == pytest.approx(55.0, rel=1e-9)


def test_align_transform_puts_origin_at_centre_with_deep3d_scale():
    s, t = 300.0, np.array([210.0, 140.0])
    pts5 = _project(FACE_TEMPLATE, s, t, _rotation(0.3, 0.1, 0.05))
    tr = align.align_transform(pts5, (400, 500), FACE_TEMPLATE)
    assert tr.scale == pytest.approx(102.0 / s)
    np.testing.assert_allclose(tr.apply(t[None]), [[112.0, 112.0]], atol=1e-9)
    np.testing.assert_allclose(tr.invert(tr.apply(pts5)), pts5, atol=1e-9)
    # Deep3DFaceRecon's trans_params: t in its y-up frame
    np.testing.assert_allclose(tr.deep3d_trans_params(), [500, 400, 102.0 / s, t[0], 399 - t[1]])


def test_warp_moves_pixels_like_the_points():
    image = np.zeros((300, 400), np.float32)
    image[150, 250] = 1.0  # one bright pixel at (x=250, y=150)
    pts5 = _project(FACE_TEMPLATE, 204.0, (250.0, 150.0))
    crop, tr = align.align_img(image, pts5, FACE_TEMPLATE)
    assert crop.shape == (224, 224) and tr.scale == pytest.approx(0.5)
    y, x = np.unravel_index(np.argmax(crop), crop.shape)
    assert (x, y) == (112, 112)
    rgb = np.zeros((300, 400, 3), np.uint8)
    assert align.align_img(rgb, pts5, FACE_TEMPLATE)[0].shape == (224, 224, 3)


def test_standard_landmarks_from_model_are_centred_decimetres():
    model = random_model(300, seed=3)
    t5 = align.standard_landmarks_3d5(model)
    lm68 = model.vertices().astype(np.float64)[model.landmarks]
    expected = align.five_from_68((lm68 - lm68.mean(axis=0)) / 1e5)
    np.testing.assert_allclose(t5, expected, rtol=1e-6, atol=1e-9)


def test_standard_landmarks_from_builtin_model_look_like_a_face():
    t5 = align.standard_landmarks_3d5()
    assert t5[0, 0] < t5[1, 0]  # left eye at smaller x
    assert t5[3, 1] < t5[2, 1] < t5[0, 1]  # mouth below nose below eyes (y up)
    eye_distance = np.linalg.norm(t5[1] - t5[0])
    assert 0.4 < eye_distance < 0.9  # decimetres


def test_arcface_transform_matches_least_squares_similarity():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(2)
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = (align.ARCFACE_TEMPLATE_112 - shift) @ rot / scale + rng.normal(scale=0.5, size=(5, 2))
    m = align.arcface_transform(pts)
    ref = SimilarityTransform.from_estimate(pts, align.ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(m, ref.params[:2], atol=1e-8)
    np.testing.assert_allclose(align.arcface_transform(align.ARCFACE_TEMPLATE_112), np.eye(3)[:2], atol=1e-12)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: align.five_from_68(np.zeros((67, 2))), "points68"),
        (lambda: align.align_transform(np.full((5, 2), np.nan), (10, 10), FACE_TEMPLATE), "points5"),
        (lambda: align.align_transform(np.zeros((5, 2)) + np.arange(5)[:, None], (10, 10), np.zeros((4, 3))),
         "template_3d5"),
        (lambda: align.arcface_transform(np.zeros((4, 2))), "points5"),
    ],
)
def test_bad_arrays_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
