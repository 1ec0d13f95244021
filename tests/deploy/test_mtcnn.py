"""MTCNN on real photos: landmarks checked against dlib's 68-point predictor; NMS against a naive loop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facescale.deploy.faces import DEFAULT_MIN_FACE_SCORE
from facescale.deploy.nms import nms
from facescale.errors import FacescaleError


def naive_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str) -> list[int]:
    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        inter = iw * ih
        return inter / (area(a) + area(b) - inter) if mode == "union" else inter / min(area(a), area(b))

    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(overlap(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("mode", ["union", "min"])
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_nms_matches_naive_reference(mode: str, threshold: float) -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (60, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (60, 2))], axis=1)
    scores = rng.permutation(60).astype(np.float64)
    assert nms(boxes, scores, threshold, mode).tolist() == naive_nms(boxes, scores, threshold, mode)


def dlib_reference_points(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Eye centres, nose tip and mouth corners from dlib's 68-point predictor, or None without dlib."""
    if importlib.util.find_spec("dlib") is None:
        return None
    import dlib

    from facescale.deploy.dlib_backend import dlib_models_dir

    predictor = dlib.shape_predictor(str(dlib_models_dir() / "shape_predictor_68_face_landmarks.dat"))
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    shape = predictor(image, dlib.rectangle(x1, y1, x2, y2))
    p = np.array([[q.x, q.y] for q in shape.parts()], dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def check_face_geometry(box: np.ndarray, points: np.ndarray) -> None:
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < nose[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert np.all(points[:, 0] > box[0]) and np.all(points[:, 0] < box[2])
    assert np.all(points[:, 1] > box[1]) and np.all(points[:, 1] < box[3])


def test_finds_the_astronaut_with_landmarks_on_eyes_nose_mouth(detector, astronaut: np.ndarray) -> None:
    found = detector.detect(astronaut)
    faces = found.select(found.scores >= DEFAULT_MIN_FACE_SCORE)
    assert len(faces) == 1
    box, points = faces.boxes[0], faces.landmarks[0].astype(np.float64)
    check_face_geometry(box, points)
    reference = dlib_reference_points(astronaut, box)
    if reference is not None:
        inter_ocular = np.linalg.norm(reference[1] - reference[0])
        errors = np.linalg.norm(points - reference, axis=1) / inter_ocular
        assert errors.max() < 0.15, errors


def test_finds_all_six_faces_in_the_group_photo(detector, group_photo: np.ndarray) -> None:
    found = detector.detect(group_photo)
    faces = found.select(found.scores >= DEFAULT_MIN_FACE_SCORE)
    assert len(faces) == 6
    centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(6) * 1e9
    assert distances.min() > 100  # six different people, not one face found twice
    for box, points in zip(faces.boxes, faces.landmarks):
        check_face_geometry(box, points)
    assert np.all(np.diff(faces.scores) <= 0)


def test_no_face_in_a_blank_picture(detector) -> None:
    assert len(detector.detect(np.full((200, 300, 3), 128, np.uint8))) == 0


def test_missing_weights_name_the_pip_command(tmp_path: Path) -> None:
    from facescale.deploy import mtcnn

    with pytest.raises(FacescaleError, match=r"pip install --no-deps \"facenet-pytorch==2\.6\.0\""):
        original = mtcnn.WEIGHTS_PACKAGE
        try:
            mtcnn.WEIGHTS_PACKAGE = "facescale_no_such_package"
            mtcnn.mtcnn_weights_dir()
        finally:
            mtcnn.WEIGHTS_PACKAGE = original


def test_rejects_a_grey_image(detector) -> None:
    with pytest.raises(FacescaleError, match="uint8"):
        detector.detect(np.zeros((50, 50), np.uint8))
