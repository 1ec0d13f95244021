"""Gallery and recognition on real photos with dlib's real-face embedder.

Only one photo of each real person ships in the installed packages, so a person's gallery
photos are augmented crops (flip, scale, brightness, rotation) of that photo and the query is a
held-out, differently augmented crop (rotation the other way, blur, contrast, heavy JPEG). This
proves the pipeline (detect, align, embed, average, search, threshold) names a known face under
changes of pose, scale and quality and rejects people who are not enrolled; it does not measure
recognition across different photos of a person.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from facescale.deploy.faces import FacePipeline, build_gallery, read_photo
from facescale.deploy.gallery import UNKNOWN, Gallery, default_threshold
from facescale.deploy.recognize import recognize_image, recognize_photo
from facescale.errors import DataError, FacescaleError


def face_crop(image: np.ndarray, box: np.ndarray, margin: float = 0.8) -> np.ndarray:
    """The face plus ``margin`` times its size on every side (clipped to the image)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, top = int(max(0, x1 - margin * w)), int(max(0, y1 - margin * h))
    right, bottom = int(min(image.shape[1], x2 + margin * w)), int(min(image.shape[0], y2 + margin * h))
    return np.ascontiguousarray(image[top:bottom, left:right])


def rotate(image: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def enrolment_photos(crop: np.ndarray) -> list[np.ndarray]:
    bright = np.clip(crop.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    return [
        crop,
        np.ascontiguousarray(crop[:, ::-1]),
        cv2.resize(bright, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA),
        rotate(crop, 7),
    ]


def held_out_photo(crop: np.ndarray) -> np.ndarray:
    """An augmentation none of the enrolment photos used."""
    image = rotate(crop, -10, 1.1)
    image = cv2.GaussianBlur(image, (5, 5), 1.2)
    image = np.clip((image.astype(np.float32) - 128) * 0.8 + 118, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)  # colour order does not matter for this round trip


def save_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def real_people(detector, astronaut: np.ndarray, group_photo: np.ndarray) -> dict[str, np.ndarray]:
    """Name -> a loose crop of one real face: the astronaut and the six people of the group photo."""
    found = detector.detect(group_photo)
    faces = found.select(found.scores >= 0.9)
    order = np.argsort(faces.boxes[:, 0])  # left to right, so names are stable
    people = {f"person{i}": face_crop(group_photo, faces.boxes[j]) for i, j in enumerate(order)}
    astro = detector.detect(astronaut)
    people["astronaut"] = face_crop(astronaut, astro.boxes[0], margin=0.5)
    return people


ENROLLED = ("astronaut", "person0", "person2", "person4")
STRANGERS = ("person1", "person3", "person5")


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory: pytest.TempPathFactory, real_people: dict[str, np.ndarray]) -> Path:
    root = tmp_path_factory.mktemp("people")
    for name in ENROLLED:
        for i, photo in enumerate(enrolment_photos(real_people[name])):
            save_rgb(root / name / f"{i}.jpg", photo)
    return root


@pytest.fixture(scope="module")
def pipeline(detector, dlib_embedder) -> FacePipeline:
    return FacePipeline(detector, dlib_embedder)


@pytest.fixture(scope="module")
def gallery_file(tmp_path_factory: pytest.TempPathFactory, people_dir: Path, pipeline: FacePipeline) -> Path:
    gallery, reports = build_gallery(people_dir, pipeline, default_threshold(pipeline.embedder), "dlib")
    assert [r.name for r in reports] == sorted(ENROLLED)
    assert all(len(r.used) == 4 and not r.no_face for r in reports)
    path = tmp_path_factory.mktemp("gallery") / "people.safetensors"
    gallery.save(path)
    return path


def test_held_out_photos_are_named_and_strangers_are_unknown(
    gallery_file: Path, pipeline: FacePipeline, real_people: dict[str, np.ndarray]
) -> None:
    gallery = Gallery.load(gallery_file)
    assert sorted(gallery.names) == sorted(ENROLLED)
    assert gallery.counts.tolist() == [4] * 4
    for name in ENROLLED + STRANGERS:
        results = recognize_image(held_out_photo(real_people[name]), pipeline, gallery)
        assert len(results) == 1, name
        expected = name if name in ENROLLED else UNKNOWN
        assert results[0].name == expected, (name, results[0])
        if name in ENROLLED:
            assert results[0].score >= gallery.threshold


def test_recognize_group_photo_names_enrolled_people_only(
    tmp_path: Path, gallery_file: Path, pipeline: FacePipeline, group_photo_path: Path
) -> None:
    report = recognize_photo(group_photo_path, tmp_path, pipeline, Gallery.load(gallery_file))
    faces = sorted(report["faces"], key=lambda f: f["box"][0])
    assert [f["name"] for f in faces] == [
        "person0", UNKNOWN, "person2", UNKNOWN, "person4", UNKNOWN,
    ]  # fmt: skip
    annotated = read_photo(report["output"])
    assert annotated.shape == read_photo(group_photo_path).shape
    assert np.abs(annotated.astype(int) - read_photo(group_photo_path).astype(int)).mean() > 0.5


def test_recognize_cli_prints_json_and_writes_pictures(
    tmp_path: Path, gallery_file: Path, real_people: dict[str, np.ndarray], facescale_cmd: list[str]
) -> None:
    photo = save_rgb(tmp_path / "in" / "query.jpg", held_out_photo(real_people["person2"]))
    out = tmp_path / "out"
    done = subprocess.run(
        [*facescale_cmd, "recognize", str(photo), "--gallery", str(gallery_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report[0]["faces"][0]["name"] == "person2"
    assert (out / "query.jpg").is_file()


def test_unreadable_photo_and_empty_gallery_give_clear_errors(
    tmp_path: Path, gallery_file: Path, pipeline: FacePipeline, dlib_embedder
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        recognize_photo(broken, tmp_path, pipeline, Gallery.load(gallery_file))
    with pytest.raises(DataError, match=r"missing\.jpg"):
        read_photo(tmp_path / "missing.jpg")
    empty = Gallery.for_embedder(dlib_embedder, 0.9)
    with pytest.raises(FacescaleError, match="gallery is empty"):
        empty.identify(np.ones((1, 128), np.float32))
    assert not list(tmp_path.glob("*.jpg.tmp*"))


def test_video_frames_are_recognized_and_written(
    tmp_path: Path, gallery_file: Path, pipeline: FacePipeline, astronaut: np.ndarray
) -> None:
    from facescale.deploy.recognize import recognize_video

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    assert writer.isOpened()
    for shift in range(6):
        writer.write(cv2.cvtColor(np.roll(small, 4 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    report = recognize_video(video, tmp_path / "out", pipeline, Gallery.load(gallery_file), every=3)
    assert report["frames_read"] == 6 and [f["frame"] for f in report["frames"]] == [0, 3]
    assert all([face["name"] for face in f["faces"]] == ["astronaut"] for f in report["frames"])
    capture = cv2.VideoCapture(report["output"])
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


def test_recognize_json_keeps_the_nearest_name_and_the_picture_shows_no_score_for_unknowns(
    tmp_path: Path, gallery_file: Path, pipeline: FacePipeline, group_photo_path: Path
) -> None:
    from facescale.deploy.recognize import FaceResult, face_labels

    gallery = Gallery.load(gallery_file)
    report = recognize_photo(group_photo_path, tmp_path, pipeline, gallery)
    faces = report["faces"]
    assert {f["decision"] for f in faces} == {"known", "unknown"}
    for face in faces:
        assert face["nearest"] in gallery.names and face["threshold"] == round(gallery.threshold, 4)
        assert (face["score"] >= face["threshold"]) == (face["decision"] == "known")
        assert face["name"] == (face["nearest"] if face["decision"] == "known" else UNKNOWN)
    stranger = FaceResult([0, 0, 1, 1], [[0, 0]] * 5, 0.99, UNKNOWN, 0.91, "person0", 0.93)
    assert face_labels(stranger) == ["unknown"]  # no number that reads as confidence
    assert face_labels(stranger, show_nearest=True) == ["unknown", "nearest: person0 cos 0.91"]
    known = FaceResult([0, 0, 1, 1], [[0, 0]] * 5, 0.99, "person0", 0.95, "person0", 0.93)
    assert face_labels(known) == ["person0 (cos 0.95)"]
