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
from facescale.errors import DataError, FacescaleError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
KNOWN_COLOUR = (40, 200, 60)  # RGB
UNKNOWN_COLOUR = (230, 50, 40)
LANDMARK_COLOUR = (255, 210, 0)


@dataclass
class FaceResult:
    """One recognized face; ``box`` (x1, y1, x2, y2) and ``landmarks`` [5][2] in pixels."""

    box: list[float]
    landmarks: list[list[float]]
    detection_score: float
    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "score": round(self.score, 4),
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
        )
        for i, match in enumerate(matches)
    ]


def draw_results(image: np.ndarray, results: list[FaceResult]) -> np.ndarray:
    """A copy of ``image`` (RGB) with boxes, landmarks and "name score" labels drawn."""
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
        label = f"{face.name} {face.score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, font, font_scale, thickness)
        top = y1 - text_h - baseline - 4
        if top < 0:  # no room above the box: put the label inside its top edge
            top = y1
        left = min(max(x1, 0), max(width - text_w - 4, 0))
        cv2.rectangle(canvas, (left, top), (left + text_w + 4, top + text_h + baseline + 4), colour, -1)
        cv2.putText(
            canvas,
            label,
            (left + 2, top + text_h + 2),
            font,
            font_scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FacescaleError(f"OpenCV could not encode the annotated picture for {path}")
    with atomic_output(path) as temp:
        temp.write_bytes(data.tobytes())


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def recognize_photo(
    path: str | Path,
    out_dir: str | Path,
    pipeline: FacePipeline,
    gallery: Gallery,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Recognize the faces of one photo, write ``out_dir/<stem>.jpg`` annotated; a JSON-ready dict."""
    path, out_dir = Path(path), Path(out_dir)
    image = read_photo(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = recognize_image(image, pipeline, gallery, threshold)
    out = out_dir / f"{path.stem}.jpg"
    write_jpeg(out, draw_results(image, results))
    return {"input": str(path), "output": str(out), "faces": [face.to_dict() for face in results]}


def recognize_video(
    path: str | Path,
    out_dir: str | Path,
    pipeline: FacePipeline,
    gallery: Gallery,
    threshold: float | None = None,
    every: int = 5,
) -> dict[str, Any]:
    """Recognize faces on every ``every``-th frame; write ``out_dir/<stem>.mp4`` annotated."""
    path, out_dir = Path(path), Path(out_dir)
    if every < 1:
        raise FacescaleError(f"--every must be >= 1, got {every}")
    out_dir.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    out = out_dir / f"{path.stem}.mp4"
    frames: list[dict[str, Any]] = []
    try:
        with atomic_output(out) as temp:
            # VideoWriter picks the container from the file name, so the temporary name ends in .mp4.
            temp_video = temp.with_name(temp.name + ".mp4")
            writer: cv2.VideoWriter | None = None
            results: list[FaceResult] = []
            index = 0
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    if index % every == 0:
                        results = recognize_image(rgb, pipeline, gallery, threshold)
                        frames.append({"frame": index, "faces": [face.to_dict() for face in results]})
                    if writer is None:
                        size = (rgb.shape[1], rgb.shape[0])
                        writer = cv2.VideoWriter(str(temp_video), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
                        if not writer.isOpened():
                            raise FacescaleError(f"OpenCV cannot write an MP4 video for {out}")
                    writer.write(cv2.cvtColor(draw_results(rgb, results), cv2.COLOR_RGB2BGR))
                    index += 1
            except BaseException:
                temp_video.unlink(missing_ok=True)
                raise
            finally:
                if writer is not None:
                    writer.release()
            if index == 0:
                temp_video.unlink(missing_ok=True)
                raise DataError(f"{path}: the video has no readable frame")
            temp_video.replace(temp)
    finally:
        capture.release()
    return {"input": str(path), "output": str(out), "frames_read": index, "every": every, "frames": frames}
