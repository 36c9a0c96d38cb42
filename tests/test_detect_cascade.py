"""The HOG-then-CNN face detector cascade and the landmark quality score, on real photos."""

import cv2
import numpy as np
import pytest
from skimage import data

from face3d_data.landmarks import (
    cnn_faces,
    find_faces,
    hog_faces,
    landmark_quality,
    landmarks68,
    quality_score,
)
from face3d_data.landmarks.quality import ENERGY_SCALE, ERROR_SCALE

FACE = data.astronaut()[0:300, 80:380]  # one face, ~90 px HOG box
ANGLE = 25.0  # tilted by 25 degrees and blurred (sigma 3 px): HOG finds no box scoring >= 0
BLUR = 3.0


def _rotation(angle):
    return cv2.getRotationMatrix2D((150.0, 150.0), angle, 1.0)


@pytest.fixture(scope="module")
def upright():
    boxes = hog_faces(FACE)
    return boxes[0], landmarks68(FACE, boxes[0])


@pytest.fixture(scope="module")
def rotated():
    tilted = cv2.warpAffine(FACE, _rotation(ANGLE), (300, 300), borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(tilted, (0, 0), BLUR)


def two_faces():
    """A 200x300 picture with the astronaut's face twice: 160 px and 120 px crops."""
    a = data.astronaut()[40:200, 140:300]
    b = cv2.resize(a, (120, 120), interpolation=cv2.INTER_AREA)
    canvas = np.full((200, 300, 3), 200, np.uint8)
    canvas[20:180, 0:160] = a
    canvas[40:160, 170:290] = b
    return canvas


def test_hog_misses_the_rotated_face_and_the_cascade_finds_it_with_the_cnn(rotated, upright):
    assert hog_faces(rotated) == []                      # nothing at dlib's own threshold
    search = find_faces(rotated)
    assert search.detector == "cnn" and len(search.boxes) == 1
    assert [t.split("(")[0] for t in search.tried] == ["hog", "cnn"]
    # the landmarks from the CNN box follow the upright face's landmarks, rotated the same way
    lm = landmarks68(rotated, search.boxes[0])
    m = _rotation(ANGLE)
    expected = upright[1] @ m[:, :2].T + m[:, 2]
    assert np.linalg.norm(lm - expected, axis=1).mean() < 4.0  # eye distance ~45 px
    assert hog_faces(rotated[:, :], threshold=-1.0) and max(b.score for b in hog_faces(rotated, threshold=-1.0)) < 0
    assert find_faces(rotated, "hog").boxes == ()


def test_cascade_costs_nothing_extra_where_hog_succeeds(upright):
    search = find_faces(FACE)
    assert search.detector == "hog" and len(search.tried) == 1
    assert search.boxes[0] == upright[0]


def test_cnn_box_is_mapped_onto_hog_geometry(upright):
    hog_box = upright[0]
    cnn_box = cnn_faces(FACE)[0]
    assert cnn_box.detector == "cnn"
    inter = (min(hog_box.right, cnn_box.right) - max(hog_box.left, cnn_box.left)) * \
            (min(hog_box.bottom, cnn_box.bottom) - max(hog_box.top, cnn_box.top))
    iou = inter / (hog_box.area + cnn_box.area - inter)
    assert iou > 0.7
    lm = landmarks68(FACE, cnn_box)
    assert np.abs(lm - upright[1]).mean() < 3.0


def test_downscaled_detection_maps_boxes_back(upright):
    big = cv2.resize(FACE, (900, 900), interpolation=cv2.INTER_CUBIC)
    small = hog_faces(big, max_side=300)[0]  # found on a 300² copy of the 900² image
    # expected: the box on the 300² original, pixel centres mapped x -> (x + 0.5) * 3 - 0.5
    ref = upright[0]
    expected = [(v + 0.5) * 3 - 0.5 for v in (ref.left, ref.top, ref.right, ref.bottom)]
    np.testing.assert_allclose([small.left, small.top, small.right, small.bottom], expected, atol=6.0)
    cnn_small, cnn_ref = cnn_faces(big, max_side=300)[0], cnn_faces(FACE)[0]
    np.testing.assert_allclose(cnn_small.centre, [(c + 0.5) * 3 - 0.5 for c in cnn_ref.centre], atol=6.0)


def test_two_faces_are_found_largest_first():
    search = find_faces(two_faces())
    assert search.detector == "hog" and len(search.boxes) == 2
    big, small = search.boxes
    assert big.area > small.area
    assert big.centre[0] < 150 < small.centre[0]


def test_no_face_tries_both_detectors():
    search = find_faces(np.full((120, 160, 3), 90, np.uint8))
    assert search.boxes == () and [t.split("(")[0] for t in search.tried] == ["hog", "cnn"]


def test_bad_detector_arguments_name_themselves():
    with pytest.raises(ValueError, match="detector"):
        find_faces(FACE, "yolo")
    with pytest.raises(ValueError, match="upsample"):
        hog_faces(FACE, upsample=-1)
    with pytest.raises(ValueError, match="max_side"):
        cnn_faces(FACE, max_side=4)


# ---------------------------------------------------------------- quality


def test_true_landmarks_score_high(upright):
    q = landmark_quality(upright[1], FACE.shape[:2])
    assert q.score > 0.8
    assert q.error_eye < 0.06 and q.prior_energy < 3.0
    assert abs(q.yaw_deg) < 15


def test_implausible_landmarks_score_low(upright):
    lm = upright[1]
    rng = np.random.default_rng(0)
    good = landmark_quality(lm, FACE.shape[:2]).score
    for _ in range(3):
        assert landmark_quality(lm[rng.permutation(68)], FACE.shape[:2]).score < 0.05
    jaw_on_background = lm.copy()
    jaw_on_background[0:8] += [-60.0, 0.0]  # the left half of the jaw dragged onto the wall
    assert landmark_quality(jaw_on_background, FACE.shape[:2]).score < 0.3 * good
    scattered = rng.uniform(0, 300, (68, 2))
    assert landmark_quality(scattered, FACE.shape[:2]).score < 0.01


def test_noise_lowers_the_score_monotonically(upright):
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(68, 2))
    scores = [landmark_quality(upright[1] + s * noise, FACE.shape[:2]).score for s in (0, 2, 5, 10)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.3


def test_score_formula_and_degenerate_points():
    assert quality_score(0.0, 0.0) == 1.0
    np.testing.assert_allclose(quality_score(ERROR_SCALE, 0.0), np.exp(-0.5))
    np.testing.assert_allclose(quality_score(ERROR_SCALE, ENERGY_SCALE), np.exp(-1.0))
    assert quality_score(float("nan"), 1.0) == 0.0
    line = np.stack([np.arange(68.0), np.arange(68.0)], axis=1)  # collinear: no fit
    q = landmark_quality(line, (100, 100))
    assert q.score == 0.0 and np.isnan(q.error_px)


@pytest.mark.parametrize("shape", [(2, 2, 3), (9, 9, 3), (5, 300, 3), (300, 5, 3), (60, 3000, 3)])
def test_tiny_and_thin_images_find_nothing_without_crashing(shape):
    # dlib's CNN raises on inputs under 10 px (and may corrupt the heap): never called on them
    image = np.zeros(shape, np.uint8)
    assert find_faces(image).boxes == ()
    assert cnn_faces(image, upsample=1) == []


@pytest.mark.parametrize("angle", [50.0, -75.0])
def test_roll_search_gives_the_predictor_an_upright_face(angle, upright):
    """Rolled past ~40°, dlib's predictor returns an upright face shape 25-50 px off; the CNN
    box turned to the roll at which HOG sees the face fixes that."""
    m = _rotation(angle)
    image = cv2.warpAffine(FACE, m, (300, 300), borderMode=cv2.BORDER_REPLICATE)
    expected = upright[1] @ m[:, :2].T + m[:, 2]
    plain = cnn_faces(image)[0]
    assert plain.roll == 0.0
    assert np.linalg.norm(landmarks68(image, plain) - expected, axis=1).mean() > 15  # the failure
    search = find_faces(image)
    assert search.detector == "cnn"
    box = search.boxes[0]
    assert abs(box.roll - angle) <= 40  # HOG itself tolerates a residual roll of ~35°
    lm = landmarks68(image, box)
    assert np.linalg.norm(lm - expected, axis=1).mean() < 3.0


def test_box_corners_turn_with_the_roll():
    from face3d_data.landmarks import FaceBox

    box = FaceBox(0.0, 0.0, 10.0, 10.0, roll=90.0)
    # a quarter turn counter-clockwise on screen: the upright face's top-left goes bottom-left
    np.testing.assert_allclose(box.corners()[0], [0.0, 10.0], atol=1e-9)
    np.testing.assert_allclose(FaceBox(0.0, 0.0, 10.0, 10.0).corners(),
                               [[0, 0], [10, 0], [10, 10], [0, 10]])
