"""Scan registration against synthetic ground truth, and the pitfalls of the issue, each with a test."""

from __future__ import annotations

import numpy as np
import pytest

from face3d_data.morphable import MorphableModel, load_model
from face3d_data.registration import (
    RegistrationOptions,
    Template,
    make_synthetic_scan,
    register_scan,
)
from face3d_data.registration.landmarks import (
    MIRROR_68,
    apply_similarity,
    detect_unit,
    landmark_order,
    similarity,
)
from face3d_data.registration.nicp import (
    NICPSchedule,
    NICPSystem,
    Target,
    find_correspondences,
)
from face3d_data.registration.surface import orient_outward, vertex_normals

#: a short schedule for the tests that only check flags and failure handling
QUICK = RegistrationOptions(fit_model=False, schedule=NICPSchedule(alphas=(50.0,), betas=(1.0,), caps=(0.05,),
                                                                   max_inner=1))


@pytest.fixture(scope="module")
def model():
    return load_model("builtin")


@pytest.fixture(scope="module")
def template(model):
    return Template.from_model(model)


@pytest.fixture(scope="module")
def scan(model):
    return make_synthetic_scan(model, seed=7, unit="m")


@pytest.fixture(scope="module")
def registered(template, scan):
    return register_scan(template, scan.vertices, scan.triangles, scan.landmarks, np.arange(68))


def _rigid_only(model, scan):
    """The baseline: the mean template moved by the landmark similarity (inner landmarks)."""
    s, R, t = similarity(model.mean[model.landmarks[17:]].astype(np.float64), scan.landmarks[17:])
    return apply_similarity(model.mean, s, R, t)


def test_synthetic_scan_is_a_fair_test(model, scan):
    # resampled (not the template's vertices), with a hole, in metres, moved by a rotation
    assert len(scan.vertices) > 2 * model.n_vertices * 0.5
    assert scan.in_hole.sum() > 20 and not np.any(scan.in_hole & scan.on_scan)
    assert np.abs(scan.bump_mm).max() > 3.0                 # deformation outside the model space
    eye = np.linalg.norm(scan.landmarks[36] - scan.landmarks[45])
    assert 0.04 < eye < 0.2                                 # metres


def test_registration_beats_rigid_alignment_on_true_correspondences(model, scan, registered):
    on = scan.on_scan
    err = np.linalg.norm(registered.vertices_scan - scan.truth, axis=1)[on] * 1000.0
    rigid = np.linalg.norm(_rigid_only(model, scan) - scan.truth, axis=1)[on] * 1000.0
    assert err.mean() < 0.6 * rigid.mean(), (err.mean(), rigid.mean())
    assert np.median(err) < 0.6 * np.median(rigid)
    # the facial features (landmark-constrained, well-shaped) are registered to about a millimetre
    feat = on & (registered.classes == 2)
    assert np.linalg.norm(registered.vertices_scan - scan.truth, axis=1)[feat].mean() * 1000 < 1.5


def test_hole_vertices_are_invalid_and_covered_ones_valid(scan, registered):
    assert registered.valid[scan.in_hole].mean() < 0.05
    assert registered.valid[scan.on_scan].mean() > 0.95
    assert np.all(registered.weight[~registered.valid] == 0)
    assert np.all(registered.weight[registered.valid] > 0)


def test_qa_record_of_a_good_registration(registered):
    qa = registered.qa
    assert registered.status == "ok", qa["reasons"]
    assert qa["unit_detected"] == "m" and qa["landmark_order"]["order"] == "ibug"
    assert qa["now_crop"]["median_mm"] < 0.5           # noise is 0.2 mm
    assert qa["landmarks"]["registered"]["inner"] < qa["landmarks"]["rigid"]["inner"]
    assert qa["flipped_faces"]["features"] == 0
    assert 0.8 < qa["edge_stretch"]["median"] < 1.2
    assert set(qa["valid_fraction"]) == {"rest", "cheeks", "features", "all"}


def test_model_frame_output_is_the_scan_output_without_the_similarity(registered):
    sim = registered.similarity
    back = apply_similarity(registered.vertices_model.astype(np.float64), sim["s"], sim["R"], sim["t"]) / 1000.0
    np.testing.assert_allclose(back, registered.vertices_scan, atol=1e-5)
    assert np.linalg.det(sim["R"]) > 0


def test_shuffled_landmarks_fail_qa_without_exception(model, template, scan):
    perm = np.random.default_rng(0).permutation(68)
    reg = register_scan(template, scan.vertices, scan.triangles, scan.landmarks[perm], np.arange(68),
                        unit="m", options=QUICK)
    assert reg.status == "failed_qa"
    assert reg.qa["landmark_order"]["order"] == "unknown"
    assert any("landmark" in r for r in reg.qa["reasons"])


def test_mirrored_landmark_order_is_detected_and_repaired(model, scan):
    mirrored = scan.landmarks[MIRROR_68]
    tmpl = model.mean[model.landmarks].astype(np.float64)
    assert landmark_order(scan.landmarks, tmpl, np.arange(68))["order"] == "ibug"
    assert landmark_order(mirrored, tmpl, np.arange(68))["order"] == "mirrored"
    shuffled = scan.landmarks[np.random.default_rng(1).permutation(68)]
    assert landmark_order(shuffled, tmpl, np.arange(68))["order"] == "unknown"


@pytest.mark.parametrize("unit,factor", [("m", 1e-3), ("cm", 0.1), ("mm", 1.0), ("um", 1e3)])
def test_unit_detection(model, unit, factor):
    lm_mm = model.mean[model.landmarks].astype(np.float64) / 1000.0   # builtin is in micrometres
    pts = {k: p * factor for k, p in enumerate(lm_mm)}
    assert detect_unit(pts)[0] == unit
    # without eye corners: from the landmark spread against the template
    inner = {k: p for k, p in pts.items() if k not in (36, 45)}
    assert detect_unit(inner, lm_mm, np.arange(68))[0] == unit


def test_unit_detection_refuses_implausible_faces():
    pts = {36: np.zeros(3), 45: np.array([2.0, 0.0, 0.0])}   # 2 mm, 2 cm, 2 m: none in [40, 200] mm
    with pytest.raises(ValueError):
        detect_unit(pts)


def test_inward_template_is_oriented_once(model):
    flipped = MorphableModel(model.mean, model.shape_basis, model.shape_std, model.exp_basis, model.exp_std,
                             triangles=model.triangles[:, [0, 2, 1]], landmarks=model.landmarks,
                             regions=model.regions)
    t = Template.from_model(flipped)
    assert t.flipped_winding
    np.testing.assert_array_equal(np.sort(t.triangles, axis=1), np.sort(model.triangles, axis=1))
    _, again = orient_outward(model.mean, t.triangles)
    assert not again
    # the normals of the oriented template point outwards (away from the head's centre) on the face
    n = vertex_normals(model.mean, t.triangles)
    face = model.regions > 0
    outward = np.einsum("ij,ij->i", n[face], model.mean[face] - model.mean.mean(0))
    assert np.mean(outward > 0) > 0.9


def test_inward_normals_reject_everything_and_the_check_repairs_it(model, template, scan):
    # the pitfall: with the scan's normals the wrong way round, the normal test drops every match
    sv = scan.vertices * 1000.0
    target = Target.build(sv, scan.triangles, flip_normals=True)
    s, R, t = similarity(model.mean[model.landmarks[17:]].astype(np.float64), scan.landmarks[17:] * 1000.0)
    v = apply_similarity(model.mean, s, R, t)
    corr = find_correspondences(target, v, vertex_normals(v, template.triangles), 10.0, 0.5)
    assert np.mean(corr.weight > 0) < 0.02
    # an inward-wound scan is detected and its normals flipped, so matches are found
    reg = register_scan(template, scan.vertices, scan.triangles[:, [0, 2, 1]], scan.landmarks, np.arange(68),
                        unit="m", options=QUICK)
    assert reg.qa["scan_normals_flipped"] is True
    assert reg.valid[scan.on_scan].mean() > 0.8


def test_zero_weight_regions_give_failed_qa_not_an_exception(model, template, scan):
    # keep only the lower half of the scan: the eyes, brows and forehead have no data
    centre_y = scan.landmarks[33]
    up = scan.landmarks[27] - scan.landmarks[33]
    up /= np.linalg.norm(up)
    keep = np.all(((scan.vertices[scan.triangles] - centre_y) @ up) < 0, axis=1)
    reg = register_scan(template, scan.vertices, scan.triangles[keep], scan.landmarks, np.arange(68),
                        unit="m", options=QUICK)
    assert np.all(np.isfinite(reg.vertices_scan))
    assert reg.status == "failed_qa"
    assert any("valid fraction" in r for r in reg.qa["reasons"])


def test_ridge_keeps_a_system_without_any_data_solvable():
    # a small grid, no data, no landmarks: only stiffness + ridge; the solve returns X_prev
    n = 6
    xs, ys = np.meshgrid(np.arange(n), np.arange(n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1) / n
    a = (np.arange(n - 1)[None, :] + n * np.arange(n - 1)[:, None]).ravel()
    tri = np.concatenate([np.stack([a, a + 1, a + n], 1), np.stack([a + 1, a + n + 1, a + n], 1)])
    sys_ = NICPSystem(v, tri, backend="splu")
    x0 = sys_.identity() + 0.01
    x = sys_.solve(10.0, np.zeros(n * n), np.zeros((n * n, 3)), 0.0, np.zeros((0, 3)), 1e-6, x0)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, x0, atol=1e-8)
