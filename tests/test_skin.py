"""Skin mask: the vectorised model against a per-pixel reference, and on a real photo."""

import numpy as np
import pytest
from skimage import data

from face3d_data import skin


def test_matches_per_pixel_reference_on_random_and_photo_pixels():
    rng = np.random.default_rng(0)
    random_pixels = rng.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)
    photo = data.astronaut()[100:112, 190:210]  # face skin
    for image in (random_pixels, photo):
        expected = skin.reference_skin_probability(image)
        got = skin.skin_probability(image)
        assert got.shape == image.shape[:2] and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-5)
        mask = skin.skin_mask(image)
        assert mask.dtype == np.uint8
        assert np.abs(mask.astype(int) - np.round(expected * 255).astype(int)).max() <= 1


def test_chunking_does_not_change_values():
    image = data.astronaut()[::8, ::8]
    np.testing.assert_allclose(skin.skin_probability(image, chunk_pixels=7), skin.skin_probability(image), atol=2e-5)


def test_far_colours_are_finite():
    # pure saturated colours are far from every component; the result must still be a probability
    image = np.array([[[0, 0, 255], [255, 0, 0], [0, 255, 0], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    p = skin.skin_probability(image)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_float_input_equals_uint8_input():
    image = data.astronaut()[200:230, 100:140]
    np.testing.assert_allclose(skin.skin_probability(image.astype(np.float64)), skin.skin_probability(image), atol=2e-5)


def test_rgb_to_ycbcr_studio_range_extremes():
    ycc = skin.rgb_to_ycbcr(np.array([[0, 0, 0], [255, 255, 255]]))
    np.testing.assert_allclose(ycc, [[16, 128, 128], [235, 128, 128]], atol=0.01)


def test_astronaut_face_high_background_and_dark_clothes_low():
    p = skin.skin_probability(data.astronaut())
    face = p[110:160, 200:250].mean()  # cheeks, nose, mouth (inside the dlib face box)
    hair = p[25:70, 170:290].mean()
    background = p[10:80, 300:380].mean()  # wall between the head and the rocket
    collar = p[190:230, 180:260].mean()  # black turtleneck
    assert face > 0.85
    assert background < 0.5
    assert collar < 0.2
    assert hair < face - 0.2


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.zeros((4, 4, 4)), np.full((2, 2, 3), np.nan)])
def test_bad_input_names_argument(bad):
    with pytest.raises(ValueError, match="image_rgb"):
        skin.skin_probability(bad)
