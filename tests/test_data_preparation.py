"""The data_preparation stage and CLI on a small folder of real files, failures included."""

import hashlib
import os

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

import data_preparation as cli
from face3d_data.coords import canonical_to_deep3d
from face3d_data.io import read_image, read_landmarks, write_image, write_landmarks_txt
from face3d_data.landmarks import five_from_68
from face3d_data.skin import skin_mask

FACE = data.astronaut()[0:300, 80:380]  # one face, ~90 px box


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def dataset(tmp_path):
    """data_root/faces with good, convertible and bad images; returns (data_root, folder)."""
    root = tmp_path / "datasets"
    folder = root / "faces"
    (folder / "detections").mkdir(parents=True)
    write_image(folder / "face.jpg", FACE)
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(FACE, cv2.COLOR_RGB2GRAY))  # 1 channel
    cv2.imwrite(str(folder / "deep16.PNG"), cv2.cvtColor(FACE, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(FACE).convert("CMYK").save(folder / "cmyk.jpeg", quality=95)
    write_image(folder / "noface.png", np.full((120, 160, 3), 90, np.uint8))
    with open(folder / "corrupt.jpg", "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a jpeg")
    write_image(folder / "badpoints.jpg", FACE)
    write_landmarks_txt(folder / "detections" / "badpoints.txt", np.ones((4, 2)) * 50)
    write_image(folder / "given.jpg", FACE)
    # 5 points as Deep3DFaceRecon's detections files hold them (0-based, y down)
    given5 = np.array([[128.5, 102.5], [171.0, 105.5], [150.0, 127.0], [126.0, 139.0], [171.0, 141.0]])
    write_landmarks_txt(folder / "detections" / "given.txt", given5)
    (folder / "notes.txt").write_text("not an image")
    return root, folder


def _run(root, *extra):
    return cli.main(["--img_folder", "faces", "--data_root", str(root), "--jobs", "1",
                     "--backend", "threading", "--quiet", *extra])


def test_folder_contract_failures_and_datalists(dataset):
    root, folder = dataset
    before = {p: _digest(folder / p) for p in os.listdir(folder) if (folder / p).is_file()}
    before["detections/given.txt"] = _digest(folder / "detections/given.txt")

    assert _run(root) == 3  # some images failed

    failures = pd.read_csv(folder / "failures.csv").set_index("key")
    assert sorted(failures.index) == ["badpoints.jpg", "corrupt.jpg", "noface.png"]
    assert "expected 5 landmarks, found 4" in failures.loc["badpoints.jpg", "message"]
    assert "badpoints.txt" in failures.loc["badpoints.jpg", "message"]
    assert "corrupt.jpg" in failures.loc["corrupt.jpg", "message"]
    assert "no face found" in failures.loc["noface.png", "message"]

    # inputs untouched: same files, same bytes, nothing moved
    for name, digest in before.items():
        assert _digest(folder / name) == digest, name

    good = ["cmyk", "deep16", "face", "given", "gray"]
    reference = read_landmarks(folder / "landmarks" / "face.txt")
    for stem in good:
        lm = read_landmarks(folder / "landmarks" / f"{stem}.txt")
        assert np.abs(lm - reference).mean() < 3.0, stem  # same face in every format
        mask = read_image(folder / "mask" / f"{stem}.png")
        assert mask.shape == (300, 300, 3)
    image = read_image(folder / "face.jpg")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # the runner runs every item with single-threaded BLAS
        expected_mask = skin_mask(image)
    np.testing.assert_array_equal(read_image(folder / "mask" / "face.png")[:, :, 0], expected_mask)
    # detected 5 points written for detected faces only; the given file stays the input
    np.testing.assert_allclose(read_landmarks(folder / "detections" / "face.txt", count=5),
                               five_from_68(reference), atol=1e-6)
    assert not os.path.exists(folder / "landmarks" / "notes.txt")

    manifest = pd.read_csv(folder / "manifest.csv").set_index("key")
    assert manifest.loc["given.jpg", "points5_source"] == "detections"
    assert manifest.loc["face.jpg", "points5_source"] == "detector"

    lists = root / "datalist" / "train"
    images = (lists / "images.txt").read_text().split()
    assert images == [f"faces/{n}" for n in ["cmyk.jpeg", "deep16.PNG", "face.jpg", "given.jpg", "gray.png"]]
    assert (lists / "landmarks.txt").read_text().split() == [f"faces/landmarks/{s}.txt" for s in good]
    assert (lists / "masks.txt").read_text().split() == [f"faces/mask/{s}.png" for s in good]


def test_resume_and_overwrite_are_byte_identical(dataset):
    root, folder = dataset
    _run(root)
    outputs = ["landmarks/face.txt", "mask/face.png", "detections/face.txt", "landmarks/given.txt"]
    first = {p: _digest(folder / p) for p in outputs}
    mtime = os.path.getmtime(folder / "landmarks/face.txt")
    _run(root)  # resume: nothing redone
    assert os.path.getmtime(folder / "landmarks/face.txt") == mtime
    _run(root, "--overwrite")  # redone: detections/face.txt is ours, so the face is detected again
    assert {p: _digest(folder / p) for p in outputs} == first
    assert pd.read_csv(folder / "manifest.csv").set_index("key").loc["face.jpg", "points5_source"] == "detector"


def test_deep3d_compat_writes_y_up_and_image_named_masks(dataset):
    root, folder = dataset
    for bad in ["noface.png", "corrupt.jpg", "badpoints.jpg", "gray.png", "deep16.PNG", "cmyk.jpeg"]:
        os.unlink(folder / bad)
    _run(root)
    canonical = read_landmarks(folder / "landmarks" / "face.txt")
    assert _run(root, "--deep3d-compat", "--overwrite", "--mode", "val") == 0
    y_up = np.loadtxt(folder / "landmarks" / "face.txt")
    np.testing.assert_allclose(y_up, canonical_to_deep3d(canonical, 300), atol=1e-6)
    masks = (root / "datalist" / "val" / "masks.txt").read_text().split()
    assert masks == ["faces/mask/face.jpg", "faces/mask/given.jpg"]
    # Deep3DFaceRecon's trainer derives the other two paths from the mask path
    for m in masks:
        assert os.path.isfile(root / m.replace("mask/", ""))
        assert os.path.isfile(root / (".".join(m.replace("mask", "landmarks").split(".")[:-1]) + ".txt"))


def test_same_stem_images_fail_instead_of_colliding(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    write_image(folder / "a.jpg", FACE)
    write_image(folder / "a.png", FACE)
    assert _run(tmp_path) == 3
    failures = pd.read_csv(folder / "failures.csv")
    assert sorted(failures["key"]) == ["a.jpg", "a.png"]
    assert failures["message"].str.contains("same stem").all()


def test_bad_options_exit_2_with_a_clear_message(dataset, capsys):
    root, _ = dataset
    assert _run(root, "--detector", "fan") == 2
    assert "fan_weights" in capsys.readouterr().err
    assert cli.main(["--img_folder", "missing", "--data_root", str(root), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_parallel_run_matches_serial(dataset, tmp_path):
    root, folder = dataset
    _run(root)
    serial = {p: _digest(folder / "landmarks" / p) for p in os.listdir(folder / "landmarks")}
    assert cli.main(["--img_folder", "faces", "--data_root", str(root), "--jobs", "2", "--quiet",
                     "--overwrite"]) == 3
    assert {p: _digest(folder / "landmarks" / p) for p in os.listdir(folder / "landmarks")} == serial
