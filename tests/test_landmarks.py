"""dlib face detection and 68 landmarks on a real photo; FAN's missing-package/weights errors."""

import numpy as np
import pytest
from skimage import data

from face3d_data.errors import ConfigError
from face3d_data.landmarks import (
    NoFaceError,
    align_img,
    box_from_points5,
    detect_faces,
    detect_landmarks68,
    five_from_68,
    landmarks5,
    landmarks68,
    standard_landmarks_3d5,
)
from tests.test_align import FACE_TEMPLATE


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_landmarks(astronaut):
    boxes = detect_faces(astronaut)
    return boxes, landmarks68(astronaut, boxes[0])


def test_one_face_on_astronaut(astronaut_landmarks):
    boxes, _ = astronaut_landmarks
    assert len(boxes) == 1
    cx, cy = boxes[0].centre
    # the face is left of centre in the upper half (the mission patch must not count as a face)
    assert 180 < cx < 260 and 80 < cy < 170
    assert boxes[0].score >= 0.5


def test_68_landmarks_are_plausible(astronaut_landmarks):
    boxes, lm = astronaut_landmarks
    box = boxes[0]
    assert lm.shape == (68, 2) and lm.dtype == np.float64
    margin = 0.2 * box.width  # dlib HOG boxes stop short of the chin
    assert np.all(lm[:, 0] > box.left - margin) and np.all(lm[:, 0] < box.right + margin)
    assert np.all(lm[:, 1] > box.top - margin) and np.all(lm[:, 1] < box.bottom + margin)
    eyes_y = lm[36:48, 1].mean()
    nose_y = lm[30, 1]
    mouth_y = lm[48:68, 1].mean()
    chin_y = lm[8, 1]
    assert eyes_y < nose_y < mouth_y < chin_y
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # iBUG 36-41: the eye at smaller image x
    assert lm[0, 0] < lm[8, 0] < lm[16, 0]  # jaw runs left to right through the chin
    np.testing.assert_allclose(landmarks5(data.astronaut(), box), five_from_68(lm))


def test_grayscale_input_finds_the_same_face(astronaut, astronaut_landmarks):
    gray = (astronaut.astype(np.float32) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    lm_gray = detect_landmarks68(gray)
    assert np.abs(lm_gray - astronaut_landmarks[1]).mean() < 3.0


def test_no_face_raises_a_clear_error():
    flat = np.full((120, 160, 3), 128, np.uint8)
    assert detect_faces(flat) == []
    with pytest.raises(NoFaceError, match="no face"):
        detect_landmarks68(flat)


def test_box_from_points5_matches_hog(astronaut, astronaut_landmarks):
    boxes, lm = astronaut_landmarks
    hog, derived = boxes[0], box_from_points5(five_from_68(lm))
    inter_w = min(hog.right, derived.right) - max(hog.left, derived.left)
    inter_h = min(hog.bottom, derived.bottom) - max(hog.top, derived.top)
    iou = inter_w * inter_h / (hog.area + derived.area - inter_w * inter_h)
    assert iou > 0.75
    lm_from_points = landmarks68(astronaut, derived)
    assert np.abs(lm_from_points - lm).mean() < 2.0


@pytest.mark.parametrize("template", ["hand-made", "builtin model"])
def test_aligned_crop_centres_the_face(astronaut, astronaut_landmarks, template):
    _, lm = astronaut_landmarks
    template_3d5 = FACE_TEMPLATE if template == "hand-made" else standard_landmarks_3d5()
    crop, tr = align_img(astronaut, five_from_68(lm), template_3d5)
    assert crop.shape == (224, 224, 3)
    lm224 = tr.apply(lm)
    centre = lm224.mean(axis=0)
    assert np.all(np.abs(centre - 112) < 20)
    eye_distance = np.linalg.norm(five_from_68(lm224)[1] - five_from_68(lm224)[0])
    assert 45 < eye_distance < 90  # 102 px per decimetre, eyes ~6 cm apart
    assert np.all((lm224 > 0) & (lm224 < 223))


def test_bad_method_and_image_name_the_argument(astronaut, astronaut_landmarks):
    box = astronaut_landmarks[0][0]
    with pytest.raises(ValueError, match="method"):
        landmarks68(astronaut, box, method="tf1")
    with pytest.raises(ValueError, match="image_rgb"):
        detect_faces(np.zeros((10, 10, 3), np.float32))


def test_fan_without_weights_folder_explains_where_to_put_them(astronaut, astronaut_landmarks):
    box = astronaut_landmarks[0][0]
    with pytest.raises(ConfigError, match="fan_weights.*2DFAN4"):
        landmarks68(astronaut, box, method="fan")


def test_fan_missing_weight_files_are_named(tmp_path, astronaut, astronaut_landmarks):
    box = astronaut_landmarks[0][0]
    (tmp_path / "s3fd-abc.pth").write_bytes(b"x")
    with pytest.raises(ConfigError, match="2DFAN4"):
        landmarks68(astronaut, box, method="fan", fan_weights=tmp_path)


def test_fan_without_package_says_how_to_install(tmp_path, astronaut, astronaut_landmarks):
    pytest.importorskip  # noqa: B018 (documentation: the package is deliberately absent here)
    try:
        import face_alignment  # noqa: F401
        pytest.skip("face-alignment is installed")
    except ImportError:
        pass
    (tmp_path / "2DFAN4-cd938726ad.zip").write_bytes(b"x")
    (tmp_path / "s3fd-619a316812.pth").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"pip install 'face3d-data\[fan\]'"):
        landmarks68(astronaut, astronaut_landmarks[0][0], method="fan", fan_weights=tmp_path)
