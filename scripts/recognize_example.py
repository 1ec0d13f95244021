"""Regenerate docs/recognize_example.jpg: the group photo that ships in the insightface wheel,
recognized against a gallery enrolled from augmented crops of three of its faces (dlib embedder).

There is one photo per real person in the installed packages, so this shows the pipeline
(detect, align, embed, search, threshold, draw), not recognition across different photos:
people 0, 2 and 4 (left to right) are enrolled; 1, 3 and 5 must come out as "unknown".

    .venv/bin/python scripts/recognize_example.py [--out docs/recognize_example.jpg]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "deploy"))

from test_real_faces import enrolment_photos, face_crop, save_rgb  # noqa: E402

from conftest import insightface_images_dir, read_rgb  # noqa: E402
from facescale.cli.main import main as facescale  # noqa: E402
from facescale.deploy.mtcnn import MTCNN  # noqa: E402


def run(out: Path) -> int:
    folder = insightface_images_dir()
    if folder is None:
        print('the group photo ships in the insightface wheel: pip install --no-deps "insightface==2.1"')
        return 1
    photo = folder / "t1.jpg"
    image = read_rgb(photo)
    found = MTCNN().detect(image)
    found = found.select(found.scores >= 0.9)
    order = np.argsort(found.boxes[:, 0])
    with tempfile.TemporaryDirectory() as tmp:
        people = Path(tmp) / "people"
        for rank in (0, 2, 4):
            crop = face_crop(image, found.boxes[order[rank]])
            for i, enrol in enumerate(enrolment_photos(crop)):
                save_rgb(people / f"person{rank}" / f"{i}.jpg", enrol)
        gallery = Path(tmp) / "people.gallery"
        if facescale(["gallery", "build", str(people), "--model", "dlib", "--out", str(gallery)]) != 0:
            return 1
        annotated = Path(tmp) / "annotated"
        if facescale(["recognize", str(photo), "--gallery", str(gallery), "--out", str(annotated)]) != 0:
            return 1
        result = cv2.imread(str(annotated / "t1.jpg"))
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), result, [cv2.IMWRITE_JPEG_QUALITY, 85])
        shutil.rmtree(annotated)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recognize_example.jpg")
    sys.exit(run(parser.parse_args().out))
