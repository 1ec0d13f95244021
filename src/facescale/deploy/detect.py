"""Detection alone: boxes, 5 landmarks and scores for every face, an annotated picture, and
optionally the aligned 112x112 crops (the first step of building a dataset from one's photos).

Output for ``photo.jpg`` in ``OUT``: ``OUT/photo.jpg`` (boxes, landmarks, detector scores drawn)
and, with crops, ``OUT/crops/photo_<i>.jpg`` for face ``i`` (faces sorted by decreasing score).
A video gives ``OUT/video.mp4`` and, with crops, ``OUT/crops/video_f<frame>_<i>.jpg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facescale.deploy.alignment import align_face
from facescale.deploy.faces import DEFAULT_MIN_FACE_SCORE, read_photo
from facescale.deploy.mtcnn import MTCNN, Detections
from facescale.deploy.recognize import LANDMARK_COLOUR, write_jpeg
from facescale.deploy.video import annotate_video

FACE_COLOUR = (0, 160, 255)  # RGB
CROP_SIZE = 112


def detect_faces(image: np.ndarray, detector: MTCNN, min_score: float = DEFAULT_MIN_FACE_SCORE) -> Detections:
    """Faces of ``image`` (uint8 ``[H, W, 3]`` RGB) scoring at least ``min_score``, best first."""
    found = detector.detect(image)
    return found.select(found.scores >= min_score)


def faces_to_dicts(found: Detections, crops: list[str] | None = None) -> list[dict[str, Any]]:
    """JSON-ready faces: ``box`` [x1, y1, x2, y2], ``landmarks`` [5][2] (eyes, nose, mouth), ``score``."""
    out = []
    for i in range(len(found)):
        face: dict[str, Any] = {
            "box": [round(float(v), 1) for v in found.boxes[i]],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in found.landmarks[i]],
            "score": round(float(found.scores[i]), 4),
        }
        if crops is not None:
            face["crop"] = crops[i]
        out.append(face)
    return out


def draw_detections(image: np.ndarray, found: Detections) -> np.ndarray:
    """A copy of ``image`` with each face's box, landmarks and detector score drawn."""
    canvas = np.ascontiguousarray(image).copy()
    scale = max(0.45, min(canvas.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for box, points, score in zip(found.boxes, found.landmarks, found.scores):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), FACE_COLOUR, thickness + 1, cv2.LINE_AA)
        for x, y in points:
            cv2.circle(
                canvas, (round(float(x)), round(float(y))), max(2, (x2 - x1) // 40), LANDMARK_COLOUR, -1
            )
        label = f"face {score:.2f}"  # the detector's face probability
        cv2.putText(
            canvas,
            label,
            (x1, max(y1 - 4, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            FACE_COLOUR,
            thickness,
            cv2.LINE_AA,
        )
    return canvas


def write_crops(image: np.ndarray, found: Detections, folder: Path, stem: str) -> list[str]:
    """Aligned ``[112, 112, 3]`` crops (ArcFace template) as ``folder/<stem>_<i>.jpg``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, points in enumerate(found.landmarks):
        path = folder / f"{stem}_{i}.jpg"
        write_jpeg(path, align_face(image, points, CROP_SIZE), quality=95)
        paths.append(str(path))
    return paths


def detect_photo(
    path: str | Path,
    out_dir: str | Path,
    detector: MTCNN,
    min_score: float = DEFAULT_MIN_FACE_SCORE,
    crops: bool = False,
) -> dict[str, Any]:
    """Detect the faces of one photo; write ``out_dir/<stem>.jpg`` annotated (and the crops)."""
    path, out_dir = Path(path), Path(out_dir)
    image = read_photo(path)
    found = detect_faces(image, detector, min_score)
    out_dir.mkdir(parents=True, exist_ok=True)
    crop_paths = write_crops(image, found, out_dir / "crops", path.stem) if crops else None
    out = out_dir / f"{path.stem}.jpg"
    write_jpeg(out, draw_detections(image, found))
    return {
        "input": str(path),
        "output": str(out),
        "size": [int(image.shape[1]), int(image.shape[0])],
        "faces": faces_to_dicts(found, crop_paths),
    }


def detect_video(
    path: str | Path,
    out_dir: str | Path,
    detector: MTCNN,
    min_score: float = DEFAULT_MIN_FACE_SCORE,
    crops: bool = False,
    every: int = 5,
) -> dict[str, Any]:
    """Detect faces on every ``every``-th frame; write ``out_dir/<stem>.mp4`` annotated (and crops)."""
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{path.stem}.mp4"
    frames: list[dict[str, Any]] = []

    def analyse(rgb: np.ndarray, index: int) -> Detections:
        found = detect_faces(rgb, detector, min_score)
        crop_paths = write_crops(rgb, found, out_dir / "crops", f"{path.stem}_f{index}") if crops else None
        frames.append({"frame": index, "faces": faces_to_dicts(found, crop_paths)})
        return found

    read = annotate_video(path, out, analyse, draw_detections, Detections.empty(), every)
    return {"input": str(path), "output": str(out), "frames_read": read, "every": every, "frames": frames}
