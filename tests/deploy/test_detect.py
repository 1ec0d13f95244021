"""`facescale detect` on the real photos that ship in installed packages (astronaut, group of six)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facescale.cli.main import main
from facescale.deploy.detect import detect_photo, detect_video


def test_detect_group_photo_six_faces_with_crops(
    tmp_path: Path, detector, group_photo_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert main(["detect", str(group_photo_path), "--out", str(out), "--crops"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "detections.json").read_text())
    faces = printed[0]["faces"]
    assert len(faces) == 6
    width, height = printed[0]["size"]
    for face in faces:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= width + 1 and 0 <= y1 < y2 <= height + 1 and face["score"] >= 0.9
        points = np.array(face["landmarks"])
        assert points.shape == (5, 2)
        assert np.all((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2))
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left/right eye and mouth corner
        crop = cv2.imread(face["crop"])
        assert crop.shape == (112, 112, 3)
    assert sorted(p.name for p in (out / "crops").iterdir()) == [f"t1_{i}.jpg" for i in range(6)]
    annotated = cv2.imread(str(out / "t1.jpg"))
    assert annotated.shape[:2] == (height, width)


def test_detect_astronaut_one_face_aligned_like_the_template(tmp_path: Path, detector, astronaut) -> None:  # type: ignore[no-untyped-def]
    from facescale.deploy.mtcnn import MTCNN

    assert isinstance(detector, MTCNN)
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    report = detect_photo(photo, tmp_path / "out", detector, crops=True)
    assert len(report["faces"]) == 1
    crop = cv2.imread(report["faces"][0]["crop"])
    # Detecting again on the aligned crop finds the eyes near the ArcFace template's (38, 52), (74, 52).
    again = detector.detect(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    assert len(again) >= 1
    eyes = again.landmarks[0][:2]
    np.testing.assert_allclose(eyes, [[38.3, 51.7], [73.5, 51.5]], atol=6)


def test_detect_video_every_third_frame(tmp_path: Path, detector, astronaut) -> None:  # type: ignore[no-untyped-def]
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for shift in range(6):
        writer.write(cv2.cvtColor(np.roll(small, 4 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    report = detect_video(video, tmp_path / "out", detector, every=3, crops=True)
    assert report["frames_read"] == 6 and [f["frame"] for f in report["frames"]] == [0, 3]
    assert all(len(f["faces"]) == 1 for f in report["frames"])
    assert sorted(p.name for p in (tmp_path / "out" / "crops").iterdir()) == [
        "clip_f0_0.jpg",
        "clip_f3_0.jpg",
    ]
    capture = cv2.VideoCapture(report["output"])
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


def test_detect_unreadable_photo_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], detector
) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert main(["detect", str(broken), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err
