"""Process a video frame by frame and write it back annotated (shared by recognize and detect).

Every ``every``-th frame is analysed; the frames between keep the last answer drawn, so the
output plays at the input's frame rate. Written atomically as MP4 (``mp4v``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from facescale.atomic import atomic_output
from facescale.errors import DataError, FacescaleError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
T = TypeVar("T")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def annotate_video(
    path: str | Path,
    out: Path,
    analyse: Callable[[np.ndarray, int], T],
    draw: Callable[[np.ndarray, T], np.ndarray],
    initial: T,
    every: int = 5,
) -> int:
    """Run ``analyse(rgb [H, W, 3] uint8, frame index)`` on every ``every``-th frame and write each
    frame through ``draw(rgb, last answer)`` to ``out``; returns the number of frames read."""
    path = Path(path)
    if every < 1:
        raise FacescaleError(f"--every must be >= 1, got {every}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    index = 0
    try:
        with atomic_output(out) as temp:
            # VideoWriter picks the container from the file name, so the temporary name ends in .mp4.
            temp_video = temp.with_name(temp.name + ".mp4")
            writer: Any = None
            answer = initial
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    if index % every == 0:
                        answer = analyse(rgb, index)
                    if writer is None:
                        size = (rgb.shape[1], rgb.shape[0])
                        writer = cv2.VideoWriter(str(temp_video), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
                        if not writer.isOpened():
                            raise FacescaleError(f"OpenCV cannot write an MP4 video for {out}")
                    writer.write(cv2.cvtColor(draw(rgb, answer), cv2.COLOR_RGB2BGR))
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
    return index
