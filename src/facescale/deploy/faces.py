"""From photos to face embeddings: read, detect, align, embed; and galleries built from folders.

A :class:`FacePipeline` pairs the MTCNN detector with an embedder. Photos are read through
``facescale.data.image_codec`` so an unreadable file fails with its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facescale.data.file_datasets import IMAGE_SUFFIXES
from facescale.data.image_codec import decode_image
from facescale.deploy.embedder import Embedder
from facescale.deploy.gallery import Gallery
from facescale.deploy.mtcnn import MTCNN, Detections
from facescale.errors import DataError, FacescaleError

# MTCNN's last stage still passes some hands and patterns at 0.7; real faces score above 0.9.
DEFAULT_MIN_FACE_SCORE = 0.9


def read_photo(path: str | Path) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB; DataError naming the file when it is missing or not an image."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the photo ({e.strerror or e})") from e
    return decode_image(data, str(path))


def list_photos(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class FacePipeline:
    """Detect faces (keeping those scoring at least ``min_face_score``), then embed them."""

    detector: MTCNN
    embedder: Embedder
    min_face_score: float = DEFAULT_MIN_FACE_SCORE

    def detect(self, image: np.ndarray) -> Detections:
        found = self.detector.detect(image)
        return found.select(found.scores >= self.min_face_score)

    def faces(self, image: np.ndarray) -> tuple[Detections, np.ndarray]:
        """Every face of ``image``: (detections, raw embeddings ``[K, D]``)."""
        found = self.detect(image)
        if len(found) == 0:
            return found, np.zeros((0, self.embedder.embedding_size), dtype=np.float32)
        return found, self.embedder.embed_faces(image, found)

    def largest_face(self, image: np.ndarray) -> np.ndarray | None:
        """Raw embedding ``[D]`` of the largest face of ``image``, or None when there is no face."""
        found = self.detect(image)
        if len(found) == 0:
            return None
        return self.embedder.embed_faces(image, found.select([found.largest()]))[0]


@dataclass
class PhotoReport:
    """What happened to the photos of one person while building or extending a gallery.

    ``unreadable``: (photo, why) for each photo that could not be read or decoded.
    """

    name: str
    used: list[str]
    no_face: list[str]
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def embed_person(
    pipeline: FacePipeline, name: str, photos: list[Path], strict: bool = False
) -> tuple[np.ndarray, PhotoReport]:
    """Raw embeddings ``[K, D]`` of the largest face in each photo that has one.

    An unreadable photo is skipped and listed in the report, or raises DataError when ``strict``.
    """
    embeddings, report = [], PhotoReport(name, [], [])
    for photo in photos:
        try:
            image = read_photo(photo)
        except DataError as e:
            if strict:
                raise
            report.unreadable.append((str(photo), str(e)))
            continue
        embedding = pipeline.largest_face(image)
        if embedding is None:
            report.no_face.append(str(photo))
        else:
            embeddings.append(embedding)
            report.used.append(str(photo))
    return np.asarray(embeddings, dtype=np.float32).reshape(-1, pipeline.embedder.embedding_size), report


def add_people(
    gallery: Gallery,
    pipeline: FacePipeline,
    people: dict[str, list[Path]],
    progress: Callable[[str], None] | None = None,
    strict: bool = False,
) -> list[PhotoReport]:
    """Add each person's photos (largest face per photo) to ``gallery``.

    A person none of whose photos shows a face is not added (see the reports); unreadable photos
    are skipped and reported, or fail the whole call when ``strict``.
    """
    gallery.check_embedder(pipeline.embedder)
    reports = []
    for name, photos in people.items():
        if progress is not None:
            progress(name)
        if not photos:
            raise FacescaleError(f"no photos given for {name!r}")
        embeddings, report = embed_person(pipeline, name, photos, strict)
        if len(embeddings):
            gallery.add(name, embeddings)
        reports.append(report)
    return reports


def people_in_folder(people_dir: str | Path) -> dict[str, list[Path]]:
    """``PEOPLE_DIR/<name>/*.jpg`` -> ``{name: [photos]}`` (sorted); errors name the folder at fault."""
    people_dir = Path(people_dir)
    if not people_dir.is_dir():
        raise FacescaleError(f"{people_dir} is not a folder (expected one sub-folder of photos per person)")
    people = {}
    for folder in sorted(p for p in people_dir.iterdir() if p.is_dir()):
        photos = list_photos(folder)
        if not photos:
            raise FacescaleError(f"{folder} holds no photos ({', '.join(IMAGE_SUFFIXES)})")
        people[folder.name] = photos
    if not people:
        raise FacescaleError(
            f"{people_dir} has no sub-folders: put each person's photos in PEOPLE_DIR/<name>/"
        )
    return people


def build_gallery(
    people_dir: str | Path,
    pipeline: FacePipeline,
    threshold: float,
    source: str = "",
    progress: Callable[[str], None] | None = None,
    strict: bool = False,
    threshold_source: str = "",
    index: str = "auto",
) -> tuple[Gallery, list[PhotoReport]]:
    """A gallery of every person in ``people_dir`` (see :func:`people_in_folder`).

    ``strict``: an unreadable photo fails the build instead of being skipped and reported.
    ``index``: ``auto`` | ``flat`` | ``ivf`` (see ``Gallery.index_choice``).
    """
    people = people_in_folder(people_dir)
    gallery = Gallery.for_embedder(pipeline.embedder, threshold, source, threshold_source, index)
    reports = add_people(gallery, pipeline, people, progress, strict)
    if len(gallery) == 0:
        raise FacescaleError(f"no face was found in any photo under {people_dir}; the gallery would be empty")
    return gallery, reports
