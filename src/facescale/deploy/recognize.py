"""Recognize faces in photos and videos against a gallery; draw the answers on the pictures.

For each face: its box, 5 landmarks, detection score, the best gallery match and its cosine
score, or ``"unknown"`` below the threshold. Photos are written as annotated JPEGs; videos
(anything OpenCV can open) are processed every Nth frame and written as an annotated MP4 in
which the last answers stay drawn on the frames between.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facescale.atomic import atomic_output
from facescale.deploy.faces import FacePipeline, read_photo
from facescale.deploy.gallery import UNKNOWN, Gallery
from facescale.deploy.video import annotate_video
from facescale.errors import FacescaleError

KNOWN_COLOUR = (40, 200, 60)  # RGB
UNKNOWN_COLOUR = (230, 50, 40)
LANDMARK_COLOUR = (255, 210, 0)


@dataclass
class FaceResult:
    """One recognized face; ``box`` (x1, y1, x2, y2) and ``landmarks`` [5][2] in pixels.

    ``name`` is the decision (a gallery name, or ``"unknown"`` below ``threshold``); ``nearest``
    and ``score`` are the best gallery entry and its cosine, kept whatever the decision.
    """

    box: list[float]
    landmarks: list[list[float]]
    detection_score: float
    name: str
    score: float
    nearest: str | None = None
    threshold: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decision": "unknown" if self.name == UNKNOWN else "known",
            "nearest": self.nearest,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "detection_score": round(self.detection_score, 4),
        }


def recognize_image(
    image: np.ndarray, pipeline: FacePipeline, gallery: Gallery, threshold: float | None = None
) -> list[FaceResult]:
    """Every face of ``image`` (uint8 ``[H, W, 3]`` RGB), named from ``gallery``."""
    found, embeddings = pipeline.faces(image)
    matches = gallery.identify(embeddings, threshold) if len(found) else []
    return [
        FaceResult(
            box=[float(v) for v in found.boxes[i]],
            landmarks=[[float(x), float(y)] for x, y in found.landmarks[i]],
            detection_score=float(found.scores[i]),
            name=match.name,
            score=match.score,
            nearest=match.nearest,
            threshold=match.threshold,
        )
        for i, match in enumerate(matches)
    ]


def face_labels(face: FaceResult, show_nearest: bool = False) -> list[str]:
    """The text drawn over a face: ``name (cos 0.62)`` when named; ``unknown`` otherwise, with no
    number (a cosine under the threshold would read as a confidence), and with ``show_nearest``
    a second, smaller line ``nearest: name cos 0.31``."""
    if face.name != UNKNOWN:
        return [f"{face.name} (cos {face.score:.2f})"]
    labels = [UNKNOWN]
    if show_nearest and face.nearest is not None:
        labels.append(f"nearest: {face.nearest} cos {face.score:.2f}")
    return labels


def _draw_label(
    canvas: np.ndarray, text: str, left: int, top: int, scale: float, thickness: int, colour: tuple
) -> int:
    """Draw ``text`` on a filled box with its top-left at (left, top); return the box's bottom."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    width = canvas.shape[1]
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, thickness)
    left = min(max(left, 0), max(width - text_w - 4, 0))
    bottom = top + text_h + baseline + 4
    cv2.rectangle(canvas, (left, top), (left + text_w + 4, bottom), colour, -1)
    cv2.putText(
        canvas, text, (left + 2, top + text_h + 2), font, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )
    return bottom


def draw_results(image: np.ndarray, results: list[FaceResult], show_nearest: bool = False) -> np.ndarray:
    """A copy of ``image`` (RGB) with boxes, landmarks and labels (see :func:`face_labels`) drawn."""
    canvas = np.ascontiguousarray(image).copy()
    height, width = canvas.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(0.45, min(height, width) / 900)
    thickness = max(1, round(font_scale * 2))
    for face in results:
        colour = UNKNOWN_COLOUR if face.name == UNKNOWN else KNOWN_COLOUR
        x1, y1, x2, y2 = (round(v) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness + 1, cv2.LINE_AA)
        radius = max(2, round((x2 - x1) / 40))
        for x, y in face.landmarks:
            cv2.circle(canvas, (round(x), round(y)), radius, LANDMARK_COLOUR, -1, cv2.LINE_AA)
        labels = face_labels(face, show_nearest)
        (_, text_h), baseline = cv2.getTextSize(labels[0], font, font_scale, thickness)
        top = y1 - text_h - baseline - 4
        if top < 0:  # no room above the box: put the label inside its top edge
            top = y1
        bottom = _draw_label(canvas, labels[0], x1, top, font_scale, thickness, colour)
        for extra in labels[1:]:  # the nearest name, small, under the box
            small = font_scale * 0.6
            bottom = _draw_label(canvas, extra, x1, max(y2 + 2, bottom), small, max(1, thickness - 1), colour)
    return canvas


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FacescaleError(f"OpenCV could not encode the annotated picture for {path}")
    with atomic_output(path) as temp:
        temp.write_bytes(data.tobytes())


def recognize_photo(
    path: str | Path,
    out_dir: str | Path,
    pipeline: FacePipeline,
    gallery: Gallery,
    threshold: float | None = None,
    show_nearest: bool = False,
) -> dict[str, Any]:
    """Recognize the faces of one photo, write ``out_dir/<stem>.jpg`` annotated; a JSON-ready dict."""
    path, out_dir = Path(path), Path(out_dir)
    image = read_photo(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = recognize_image(image, pipeline, gallery, threshold)
    out = out_dir / f"{path.stem}.jpg"
    write_jpeg(out, draw_results(image, results, show_nearest))
    return {"input": str(path), "output": str(out), "faces": [face.to_dict() for face in results]}


def recognize_video(
    path: str | Path,
    out_dir: str | Path,
    pipeline: FacePipeline,
    gallery: Gallery,
    threshold: float | None = None,
    every: int = 5,
    show_nearest: bool = False,
) -> dict[str, Any]:
    """Recognize faces on every ``every``-th frame; write ``out_dir/<stem>.mp4`` annotated."""
    path, out_dir = Path(path), Path(out_dir)
    if every < 1:
        raise FacescaleError(f"--every must be >= 1, got {every}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{path.stem}.mp4"
    frames: list[dict[str, Any]] = []

    def analyse(rgb: np.ndarray, index: int) -> list[FaceResult]:
        results = recognize_image(rgb, pipeline, gallery, threshold)
        frames.append({"frame": index, "faces": [face.to_dict() for face in results]})
        return results

    def draw(rgb: np.ndarray, results: list[FaceResult]) -> np.ndarray:
        return draw_results(rgb, results, show_nearest)

    no_faces: list[FaceResult] = []
    read = annotate_video(path, out, analyse, draw, no_faces, every)
    return {"input": str(path), "output": str(out), "frames_read": read, "every": every, "frames": frames}
