"""The data_preparation stage and CLI on a small folder of real files, failures included."""

import hashlib
import json
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
    # the cascade tried both detectors, and the row names them
    assert "no face found by hog(" in failures.loc["noface.png", "message"]
    assert "then by cnn(" in failures.loc["noface.png", "message"]

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
    # detected 5 points go to detected/ (never detections/, which holds inputs only)
    np.testing.assert_allclose(read_landmarks(folder / "detected" / "face.txt", count=5),
                               five_from_68(reference), atol=1e-6)
    assert sorted(os.listdir(folder / "detections")) == ["badpoints.txt", "given.txt"]
    assert not os.path.exists(folder / "detected" / "given.txt")
    assert not os.path.exists(folder / "landmarks" / "notes.txt")

    manifest = pd.read_csv(folder / "manifest.csv").set_index("key")
    assert manifest.loc["given.jpg", "detector"] == "given"
    assert manifest.loc["face.jpg", "detector"] == "hog"
    assert manifest.loc["face.jpg", "quality"] > 0.8

    lists = root / "datalist" / "train"
    images = (lists / "images.txt").read_text().split()
    assert images == [f"faces/{n}" for n in ["cmyk.jpeg", "deep16.PNG", "face.jpg", "given.jpg", "gray.png"]]
    assert (lists / "landmarks.txt").read_text().split() == [f"faces/landmarks/{s}.txt" for s in good]
    assert (lists / "masks.txt").read_text().split() == [f"faces/mask/{s}.png" for s in good]


def test_resume_and_overwrite_are_byte_identical(dataset):
    root, folder = dataset
    _run(root)
    outputs = ["landmarks/face.txt", "mask/face.png", "detected/face.txt", "landmarks/given.txt"]
    first = {p: _digest(folder / p) for p in outputs}
    mtime = os.path.getmtime(folder / "landmarks/face.txt")
    _run(root)  # resume: nothing redone
    assert os.path.getmtime(folder / "landmarks/face.txt") == mtime
    _run(root, "--overwrite")  # redone: detected/face.txt is ours and never an input
    assert {p: _digest(folder / p) for p in outputs} == first
    assert pd.read_csv(folder / "manifest.csv").set_index("key").loc["face.jpg", "detector"] == "hog"


def test_deep3d_compat_writes_y_up_and_image_named_masks(dataset, monkeypatch):
    root, folder = dataset
    monkeypatch.chdir(root.parent)  # Deep3DFaceRecon's lists go to ./datalist
    for bad in ["noface.png", "corrupt.jpg", "badpoints.jpg", "gray.png", "deep16.PNG", "cmyk.jpeg"]:
        os.unlink(folder / bad)
    _run(root)
    canonical = read_landmarks(folder / "landmarks" / "face.txt")
    assert _run(root, "--deep3d-compat", "--overwrite", "--mode", "val") == 0
    y_up = np.loadtxt(folder / "landmarks" / "face.txt")
    np.testing.assert_allclose(y_up, canonical_to_deep3d(canonical, 300), atol=1e-6)
    masks = (root.parent / "datalist" / "val" / "masks.txt").read_text().split()
    assert masks == ["datasets/faces/mask/face.jpg", "datasets/faces/mask/given.jpg"]
    # Deep3DFaceRecon's trainer derives the other two paths from the mask path
    for m in masks:
        assert os.path.isfile(m.replace("mask/", ""))
        assert os.path.isfile(".".join(m.replace("mask", "landmarks").split(".")[:-1]) + ".txt")


def test_same_stem_images_fail_instead_of_colliding(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    write_image(folder / "a.jpg", FACE)
    write_image(folder / "a.png", FACE)
    assert _run(tmp_path) == 3
    failures = pd.read_csv(folder / "failures.csv")
    assert sorted(failures["key"]) == ["a.jpg", "a.png"]
    assert failures["message"].str.contains("same stem").all()


def test_face_suffix_names_collide_only_with_faces_all(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    write_image(folder / "a.jpg", FACE)
    write_image(folder / "a_face1.jpg", FACE)
    assert _run(tmp_path, "--detector", "hog") == 0
    assert _run(tmp_path, "--detector", "hog", "--faces", "all", "--overwrite") == 3
    assert sorted(pd.read_csv(folder / "failures.csv")["key"]) == ["a.jpg", "a_face1.jpg"]


def test_bad_options_exit_2_with_a_clear_message(dataset, capsys):
    root, _ = dataset
    assert _run(root, "--landmarker", "fan") == 2
    assert "fan_weights" in capsys.readouterr().err
    assert _run(root, "--detector", "fan") == 2  # the old meaning of --detector is explained
    assert "--landmarker" in capsys.readouterr().err
    assert _run(root, "--detector", "yolo") == 2
    assert "detector" in capsys.readouterr().err
    assert _run(root, "--min_quality", "1.5") == 2
    assert "min_quality" in capsys.readouterr().err
    assert _run(root, "--deep3d-compat", "--faces", "all") == 2
    assert cli.main(["--img_folder", "missing", "--data_root", str(root), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_parallel_run_matches_serial(dataset, tmp_path):
    root, folder = dataset
    _run(root)
    serial = {p: _digest(folder / "landmarks" / p) for p in os.listdir(folder / "landmarks")}
    assert cli.main(["--img_folder", "faces", "--data_root", str(root), "--jobs", "2", "--quiet",
                     "--overwrite"]) == 3
    assert {p: _digest(folder / "landmarks" / p) for p in os.listdir(folder / "landmarks")} == serial


# ---------------------------------------------------------------- issue 14: real photos


def _tilted_blurred():
    """The face tilted 25 degrees and blurred: dlib's HOG finds no box, its CNN does."""
    m = cv2.getRotationMatrix2D((150.0, 150.0), 25.0, 1.0)
    return cv2.GaussianBlur(cv2.warpAffine(FACE, m, (300, 300), borderMode=cv2.BORDER_REPLICATE), (0, 0), 3.0)


def _two_faces():
    a = data.astronaut()[40:200, 140:300]
    canvas = np.full((200, 300, 3), 200, np.uint8)
    canvas[20:180, 0:160] = a
    canvas[40:160, 170:290] = cv2.resize(a, (120, 120), interpolation=cv2.INTER_AREA)
    return canvas


def _manifest(folder):
    return pd.read_csv(folder / "manifest.csv").set_index("key")


def test_cascade_falls_back_to_the_cnn_and_records_the_detector(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    write_image(folder / "face.png", FACE)
    write_image(folder / "tilted.png", _tilted_blurred())
    roll = cv2.getRotationMatrix2D((150.0, 150.0), 55.0, 1.0)
    write_image(folder / "rolled.png", cv2.warpAffine(FACE, roll, (300, 300), borderMode=cv2.BORDER_REPLICATE))
    assert _run(tmp_path, "--set", "vis_every=1") == 0
    manifest = _manifest(folder)
    # rolled 55°: found by the CNN, given a roll, and its landmarks follow the face's
    assert manifest.loc["rolled.png", "detector"] == "cnn"
    assert json.loads(manifest.loc["rolled.png", "faces"])[0]["roll_deg"] > 10
    expected = read_landmarks(folder / "landmarks" / "face.txt") @ roll[:, :2].T + roll[:, 2]
    # (without the roll search: ~30 px off)
    assert np.linalg.norm(read_landmarks(folder / "landmarks" / "rolled.txt") - expected, axis=1).mean() < 5.0
    assert manifest.loc["face.png", "detector"] == "hog"
    assert manifest.loc["tilted.png", "detector"] == "cnn"
    assert manifest.loc["tilted.png", "detectors_tried"].startswith("hog(") and "cnn(" in \
        manifest.loc["tilted.png", "detectors_tried"]
    assert manifest.loc["tilted.png", "quality"] > 0.5
    assert read_image(folder / "vis" / "tilted.jpg").shape == (300, 600, 3)
    # HOG alone misses it: one failures row naming HOG only
    assert _run(tmp_path, "--detector", "hog", "--overwrite") == 3
    failures = pd.read_csv(folder / "failures.csv").set_index("key")
    assert list(failures.index) == ["rolled.png", "tilted.png"]
    assert "hog(" in failures.loc["tilted.png", "message"] and "cnn" not in failures.loc["tilted.png", "message"]


def _green_red(picture, box):
    """(green, red) pixel counts of the vis box outline colours inside ``box`` (l, t, r, b)."""
    left, t, r, b = (int(v) for v in box)
    patch = picture[max(t - 3, 0):b + 4, max(left - 3, 0):r + 4].astype(int)
    green = np.sum((patch[..., 1] > 170) & (patch[..., 0] < 110) & (patch[..., 2] < 110))
    red = np.sum((patch[..., 0] > 180) & (patch[..., 1] < 110) & (patch[..., 2] < 110))
    return green, red


def test_two_faces_largest_and_all(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    write_image(folder / "two.png", _two_faces())
    assert _run(tmp_path, "--set", "vis_every=1") == 0
    row = _manifest(folder).loc["two.png"]
    assert row["n_faces"] == 2
    faces = json.loads(row["faces"])
    assert [f["name"] for f in faces] == ["two"]
    largest = read_landmarks(folder / "landmarks" / "two.txt")
    assert largest[:, 0].mean() < 150  # the 160 px copy on the left
    vis = read_image(folder / "vis" / "two.jpg")
    big_box = faces[0]["box"]
    green, red = _green_red(vis, big_box)
    assert green > 100 and red < green / 10            # the taken face: green
    green, red = _green_red(vis, (185, 60, 280, 145))
    assert red > 50                                    # the other face: red (not taken)
    assert (tmp_path / "datalist" / "train" / "landmarks.txt").read_text().split() == ["faces/landmarks/two.txt"]

    assert _run(tmp_path, "--faces", "all", "--overwrite", "--set", "vis_every=1") == 0
    faces = json.loads(_manifest(folder).loc["two.png", "faces"])
    assert [f["name"] for f in faces] == ["two_face1", "two_face2"]
    np.testing.assert_array_equal(read_landmarks(folder / "landmarks" / "two_face1.txt"), largest)
    assert read_landmarks(folder / "landmarks" / "two_face2.txt")[:, 0].mean() > 150
    lists = tmp_path / "datalist" / "train"
    assert (lists / "images.txt").read_text().split() == ["faces/two.png"] * 2
    assert (lists / "landmarks.txt").read_text().split() == ["faces/landmarks/two_face1.txt",
                                                             "faces/landmarks/two_face2.txt"]
    assert (lists / "masks.txt").read_text().split() == ["faces/mask/two.png"] * 2
    vis = read_image(folder / "vis" / "two.jpg")
    assert _green_red(vis, (185, 60, 280, 145))[0] > 100  # both taken now


def test_min_quality_filters_the_datalists(dataset):
    root, folder = dataset
    _run(root)
    quality = _manifest(folder)["quality"].dropna()
    assert len(quality) == 5 and quality.min() > 0.5
    cut = float(quality.sort_values().iloc[2])  # keeps the 3 best
    mtime = os.path.getmtime(folder / "landmarks" / "face.txt")
    _run(root, "--min_quality", str(cut), "--mode", "val")
    images = (root / "datalist" / "val" / "images.txt").read_text().split()
    assert sorted(images) == sorted(f"faces/{k}" for k in quality.index[quality >= cut])
    assert len(images) == 3
    assert os.path.getmtime(folder / "landmarks" / "face.txt") == mtime  # only the lists changed


def _deep3d_read(flist, data_root="./"):
    """A reader written to Deep3DFaceRecon's documented conventions (data/flist_dataset.py):
    each masks.txt line stripped and joined with --data_root; image = mask path without 'mask/';
    landmarks = every 'mask' replaced by 'landmarks', extension -> .txt; np.loadtxt, y up."""
    samples = []
    with open(flist) as f:
        for line in f:
            msk_path = os.path.join(data_root, line.strip())
            img_path = msk_path.replace("mask/", "")
            lm_path = ".".join(msk_path.replace("mask", "landmarks").split(".")[:-1]) + ".txt"
            image = np.array(Image.open(img_path).convert("RGB"))
            mask = np.array(Image.open(msk_path).convert("RGB"))
            lm = np.loadtxt(lm_path).astype(np.float32)
            lm[:, 1] = image.shape[0] - 1 - lm[:, 1]  # y up -> y down, for comparison
            samples.append((img_path, image, mask, lm))
    return samples


def test_deep3d_compat_layout_reads_back_with_deep3dfacerecon_conventions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for sub in ("ours", "d3d"):
        (tmp_path / sub / "faces").mkdir(parents=True)
        write_image(tmp_path / sub / "faces" / "face.jpg", FACE)
        write_image(tmp_path / sub / "faces" / "two.png", _two_faces())
    common = ["--img_folder", "faces", "--jobs", "1", "--backend", "threading", "--quiet", "--detector", "hog"]
    assert cli.main([*common, "--data_root", "ours"]) == 0
    assert cli.main([*common, "--data_root", "d3d", "--deep3d-compat"]) == 0
    # Deep3DFaceRecon's train.py defaults: --flist datalist/train/masks.txt --data_root ./
    assert (tmp_path / "datalist" / "train" / "masks.txt").read_text().split() == [
        "d3d/faces/mask/face.jpg", "d3d/faces/mask/two.png"]
    assert (tmp_path / "datalist" / "train" / "images.txt").read_text().split() == [
        "d3d/faces/face.jpg", "d3d/faces/two.png"]
    samples = _deep3d_read("datalist/train/masks.txt")
    assert [s[0] for s in samples] == ["./d3d/faces/face.jpg", "./d3d/faces/two.png"]
    for (_img_path, image, mask, lm), stem in zip(samples, ["face", "two"]):
        canonical = read_landmarks(tmp_path / "ours" / "faces" / "landmarks" / f"{stem}.txt")
        np.testing.assert_allclose(lm, canonical, atol=1e-4)
        assert mask.shape == image.shape
    # our own lists stay where they were, relative to data_root
    assert (tmp_path / "ours" / "datalist" / "train" / "masks.txt").read_text().split() == [
        "faces/mask/face.png", "faces/mask/two.png"]


def test_deep3d_compat_refuses_paths_its_trainer_would_misread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "faces"
    folder.mkdir(parents=True)
    write_image(folder / "mask_01.jpg", FACE)  # 'mask' -> 'landmarks' also renames the file
    write_image(folder / "face.jpg", FACE)
    assert cli.main(["--img_folder", "faces", "--data_root", "data", "--jobs", "1", "--backend",
                     "threading", "--quiet", "--detector", "hog", "--deep3d-compat"]) == 3
    failures = pd.read_csv(folder / "failures.csv").set_index("key")
    assert list(failures.index) == ["mask_01.jpg"]
    assert "landmarks_01.txt" in failures.loc["mask_01.jpg", "message"]
    assert (tmp_path / "datalist" / "train" / "masks.txt").read_text().split() == ["data/faces/mask/face.jpg"]


def test_name_with_a_space_finishes_with_manifest_and_datalists(tmp_path):
    from face3d_data.io import read_datalist

    folder = tmp_path / "faces"
    folder.mkdir()
    write_image(folder / "my face.jpg", FACE)
    assert _run(tmp_path, "--detector", "hog") == 0
    assert _manifest(folder).loc["my face.jpg", "detector"] == "hog"
    rows = read_datalist(tmp_path / "datalist" / "train" / "images.txt", tmp_path)
    assert [os.path.normpath(str(r[0])) for r in rows] == [str(folder / "my face.jpg")]


def _outputs(folder):
    found = {}
    for sub in ("landmarks", "mask", "detected"):
        for name in sorted(os.listdir(folder / sub)):
            found[f"{sub}/{name}"] = _digest(folder / sub / name)
    return found


def _make_folder(folder, n):
    folder.mkdir(parents=True)
    for i in range(n):
        shift = 4 * (i % 6)
        write_image(folder / f"img_{i:02d}.jpg", np.ascontiguousarray(data.astronaut()[shift:300 + shift,
                                                                                     80 + shift:380 + shift]))


def test_kill_9_then_resume_equals_a_clean_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    n = 10
    _make_folder(tmp_path / "clean" / "faces", n)
    _make_folder(tmp_path / "killed" / "faces", n)
    args = ["--img_folder", "faces", "--jobs", "1", "--backend", "threading", "--quiet",
            "--detector", "hog", "--set", "vis_every=0"]
    assert _run(tmp_path / "clean", "--detector", "hog", "--set", "vis_every=0") == 0

    root = tmp_path / "killed"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data_preparation.py")
    proc = subprocess.Popen([sys.executable, script, *args, "--data_root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    landmarks = root / "faces" / "landmarks"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if landmarks.is_dir() and len(os.listdir(landmarks)) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (root / "faces" / "manifest.csv").exists()
    assert len(os.listdir(landmarks)) < n

    assert cli.main([*args, "--data_root", str(root)]) == 0  # resume
    clean, resumed = _outputs(tmp_path / "clean" / "faces"), _outputs(root / "faces")
    assert resumed == clean
    columns = ["outputs", "detector", "n_faces", "quality"]
    pd.testing.assert_frame_equal(_manifest(root / "faces")[columns],
                                  _manifest(tmp_path / "clean" / "faces")[columns])

    # --overwrite repairs damaged outputs; our detected/ points are never read back as inputs
    write_landmarks_txt(root / "faces" / "landmarks" / "img_03.txt", np.zeros((68, 2)))
    write_landmarks_txt(root / "faces" / "detected" / "img_05.txt",
                        read_landmarks(root / "faces" / "detected" / "img_05.txt", count=5) + 7.0)
    assert cli.main([*args, "--data_root", str(root), "--overwrite"]) == 0
    assert _outputs(root / "faces") == clean


def test_detections_written_by_an_older_version_are_never_inputs(tmp_path):
    """Versions before detected/ wrote their points to detections/ and listed them in the
    manifest: such files stay outputs, on this run and on every later one."""
    from pipelines.core.manifest import write_manifest

    folder = tmp_path / "faces"
    (folder / "detections").mkdir(parents=True)
    write_image(folder / "face.jpg", FACE)
    old_points = five_from_68(read_landmarks_68_of(FACE)) + 9.0  # stale, wrong points
    write_landmarks_txt(folder / "detections" / "face.txt", old_points)
    write_manifest(str(folder), "manifest", [{"key": "face.jpg", "status": "ok",
                                              "inputs": {"image": str(folder / "face.jpg")},
                                              "outputs": ["landmarks/face.txt", "detections/face.txt"]}],
                   {"stage": "data_preparation"})
    for extra in ((), ("--overwrite",)):
        assert _run(tmp_path, "--detector", "hog", *extra) == 0
        row = _manifest(folder).loc["face.jpg"]
        assert row["detector"] == "hog" and row["ignored_detections"] == "detections/face.txt"
    np.testing.assert_array_equal(read_landmarks(folder / "landmarks" / "face.txt"),
                                  read_landmarks_68_of(read_image(folder / "face.jpg")))


def read_landmarks_68_of(image):
    from face3d_data.landmarks import hog_faces, landmarks68

    return landmarks68(image, hog_faces(image)[0])
