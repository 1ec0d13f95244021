"""Embeddings for a whole collection of aligned faces: a folder, a list file, a rec, or a .bin.

Writes ``OUT/embeddings.npy`` (float32 ``[N, D]``, row i = item i), ``OUT/names.txt`` (one
name per line) and ``OUT/index.json`` (source, model, and per item its name and label). Every
file is written under a temporary name and renamed when complete. Images must be aligned
112x112 faces (as insightface datasets store them) unless a detector is given, in which case the
largest face of each image is detected and aligned first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facescale.atomic import atomic_output, write_text_atomic
from facescale.data.file_datasets import IMAGE_SUFFIXES, iter_list_file
from facescale.data.image_codec import decode_image
from facescale.deploy.embedder import FACE_SIZE, Embedder
from facescale.deploy.mtcnn import MTCNN
from facescale.errors import DataError, FacescaleError
from facescale.models.embeddings import l2_normalize
from facescale.models.inference import batches


@dataclass
class FaceCollection:
    """Items to embed: ``read(i)`` gives encoded image bytes, ``names[i]`` / ``labels[i]`` describe them."""

    kind: str
    source: str
    names: list[str]
    labels: list[Any]
    reader: Any

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> bytes:
        return self.reader(i)


def _folder(root: Path) -> FaceCollection:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    names = [p.relative_to(root).as_posix() for p in files]
    labels = [p.parent.name if p.parent != root else None for p in files]
    return FaceCollection("folder", str(root), names, labels, lambda i: files[i].read_bytes())


def _list_file(path: Path) -> FaceCollection:
    files, names, labels = [], [], []
    for line_no, name, label in iter_list_file(path):
        file = path.parent / name  # relative to the list; an absolute name stays as it is
        if not file.is_file():
            hint = " (a path with spaces needs a tab before its label)" if label is not None else ""
            raise DataError(f"{path} line {line_no}: {file} does not exist{hint}")
        files.append(file)
        names.append(name)
        labels.append(_list_label(label))
    return FaceCollection("list", str(path), names, labels, lambda i: files[i].read_bytes())


def _list_label(label: str | None) -> int | str | None:
    """Integer labels as ints (as in training lists); other labels, such as names, as written."""
    if label is None:
        return None
    try:
        return int(label)
    except ValueError:
        return label


def _recordio(path: Path) -> FaceCollection:
    from facescale.data.recordio_dataset import open_recordio

    dataset = open_recordio(path)
    names = [Path(dataset.describe(i)).name for i in range(len(dataset))]  # e.g. "train.rec record 7"
    return FaceCollection("recordio", str(path), names, dataset.labels.tolist(), dataset.read)


def _verification_bin(path: Path) -> FaceCollection:
    from facescale.data.verification_bin import load_verification_bin

    pairs = load_verification_bin(path)
    names = [f"pair {i // 2} image {i % 2}" for i in range(len(pairs.images))]
    labels = [bool(pairs.issame[i // 2]) for i in range(len(pairs.images))]
    return FaceCollection("verification_bin", str(path), names, labels, lambda i: pairs.images[i])


def open_collection(path: str | Path) -> FaceCollection:
    """Guess the input kind: a ``.bin`` file, a ``.rec`` file or prefix or folder holding one, a
    ``.txt``/``.lst`` list file (``path<TAB>label`` or ``path label`` per line, label optional,
    paths relative to the list; read as training's ``label.txt``), or an image folder."""
    path = Path(path)
    if path.suffix == ".bin" and path.is_file():
        return _verification_bin(path)
    if path.suffix == ".rec" and path.is_file():
        return _recordio(path)
    if not path.exists() and path.with_suffix(".rec").is_file():  # a prefix such as data/train
        return _recordio(path.with_suffix(".rec"))
    if path.is_file() and path.suffix in (".txt", ".lst", ".list"):
        return _list_file(path)
    if path.is_dir():
        if any(path.glob("*.rec")):
            return _recordio(path)
        return _folder(path)
    raise FacescaleError(
        f"{path}: not an image folder, a list file (.txt/.lst), a RecordIO .rec (or prefix or folder) "
        "or a verification .bin"
    )


def _aligned(collection: FaceCollection, i: int, detector: MTCNN | None) -> np.ndarray:
    where = f"{collection.source}: {collection.names[i]}"
    image = decode_image(collection.read(i), where)
    if detector is not None:
        from facescale.deploy.alignment import align_face

        found = detector.detect(image)
        if len(found) == 0:
            raise DataError(f"{where}: no face found")
        return align_face(image, found.landmarks[found.largest()], FACE_SIZE)
    if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
        raise DataError(
            f"{where}: image is {image.shape[1]}x{image.shape[0]}, not an aligned {FACE_SIZE}x{FACE_SIZE} "
            "face; pass --detect to detect and align faces first"
        )
    return image


def _image_batches(
    collection: FaceCollection, batch_size: int, detector: MTCNN | None, workers: int
) -> Iterator[tuple[slice, np.ndarray]]:
    # OpenCV decodes without the GIL, so threads overlap decoding; detection stays in one thread.
    with ThreadPoolExecutor(max_workers=max(1, workers if detector is None else 1)) as pool:
        for part in batches(len(collection), batch_size):
            images = list(pool.map(lambda i: _aligned(collection, i, detector), range(part.start, part.stop)))
            yield part, np.stack(images)


def extract_embeddings(
    collection: FaceCollection,
    embedder: Embedder,
    out_dir: str | Path,
    batch_size: int = 64,
    normalize: bool = False,
    detector: MTCNN | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed every item of ``collection`` into ``out_dir``; returns the index written to index.json."""
    if len(collection) == 0:
        raise FacescaleError(f"{collection.source}: no images to embed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=len(collection), unit="img", desc="embed", disable=not progress)
    # Written by hand (header, then rows) so the whole array never has to be held in memory.
    with atomic_output(out_dir / "embeddings.npy") as temp, open(temp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f,
            {"descr": "<f4", "fortran_order": False, "shape": (len(collection), embedder.embedding_size)},
        )
        for _part, images in _image_batches(collection, batch_size, detector, workers):
            embeddings = embedder.embed(images)
            if normalize:
                embeddings = l2_normalize(embeddings, dtype=np.float32)
            f.write(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())
            bar.update(len(images))
    bar.close()
    index = {
        "source": collection.source,
        "kind": collection.kind,
        "model": embedder.name,
        "fingerprint": embedder.fingerprint,
        "embedding_size": embedder.embedding_size,
        "normalized": normalize,
        "count": len(collection),
        "items": [{"name": n, "label": lab} for n, lab in zip(collection.names, collection.labels)],
    }
    write_text_atomic(out_dir / "names.txt", "".join(f"{name}\n" for name in collection.names))
    write_text_atomic(out_dir / "index.json", json.dumps(index, indent=1))
    return index
