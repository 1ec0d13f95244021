"""Read the IJB-B / IJB-C protocol files in the layout insightface distributes them.

```
IJBC/                                    (IJBB/ the same with ijbb_ names)
  loose_crop/1.jpg ...                   the face crops the landmarks refer to
  meta/ijbc_face_tid_mid.txt             "<image> <template id> <media id>"          one line per face
  meta/ijbc_name_5pts_score.txt          "<image> x1 y1 ... x5 y5 <faceness score>"   same faces
  meta/ijbc_template_pair_label.txt      "<template 1> <template 2> <1 same | 0 not>" 1:1 pairs
  meta/ijbc_1N_gallery_G1.csv, _G2.csv   1:N galleries (IJB-B: ijbb_1N_gallery_S1.csv, _S2.csv)
  meta/ijbc_1N_probe_mixed.csv           1:N probes; CSV with a TEMPLATE_ID,SUBJECT_ID,... header
```
The text files are space separated without a header. Landmarks are pixel coordinates in the
loose crop, in the order left eye, right eye, nose tip, left and right mouth corner.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facescale.errors import DataError, FacescaleError

TARGETS = ("IJBB", "IJBC")
CSV_HEADER = (
    "TEMPLATE_ID",
    "SUBJECT_ID",
    "FILENAME",
    "SIGHTING_ID",
    "FACE_X",
    "FACE_Y",
    "FACE_WIDTH",
    "FACE_HEIGHT",
)


@dataclass(frozen=True)
class IjbLayout:
    """Where each protocol file of one IJB set lives."""

    root: Path
    target: str  # "IJBB" or "IJBC"

    @property
    def prefix(self) -> str:
        return self.target.lower()

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    @property
    def image_dir(self) -> Path:
        return self.root / "loose_crop"

    @property
    def face_tid_mid(self) -> Path:
        return self.meta / f"{self.prefix}_face_tid_mid.txt"

    @property
    def name_5pts_score(self) -> Path:
        return self.meta / f"{self.prefix}_name_5pts_score.txt"

    @property
    def template_pair_label(self) -> Path:
        return self.meta / f"{self.prefix}_template_pair_label.txt"

    @property
    def gallery_names(self) -> tuple[str, str]:
        """IJB-C calls its two galleries G1/G2, IJB-B S1/S2."""
        return ("G1", "G2") if self.target == "IJBC" else ("S1", "S2")

    def gallery(self, name: str) -> Path:
        return self.meta / f"{self.prefix}_1N_gallery_{name}.csv"

    @property
    def probe(self) -> Path:
        return self.meta / f"{self.prefix}_1N_probe_mixed.csv"

    def has_identification(self) -> bool:
        return self.probe.is_file() and all(self.gallery(g).is_file() for g in self.gallery_names)


def find_layout(path: str | Path, target: str) -> IjbLayout:
    """The layout rooted at ``path`` (holding ``meta/``) or at ``path/<target>`` (the IJB_root style)."""
    target = target.upper()
    if target not in TARGETS:
        raise FacescaleError(f"IJB target {target!r} is not one of {', '.join(TARGETS)}")
    path = Path(path)
    for root in (path, path / target):
        layout = IjbLayout(root, target)
        if layout.face_tid_mid.is_file():
            return layout
    raise FacescaleError(
        f"{path}: no IJB set here: expected {IjbLayout(path, target).face_tid_mid} "
        f"(or the same under {path / target})"
    )


@dataclass
class IjbFaces:
    """Every face of the set, one row each: ``landmarks`` ``[M, 5, 2]``, ``faceness`` ``[M]``."""

    names: list[str]
    templates: np.ndarray  # int64 [M]
    medias: np.ndarray  # int64 [M]
    landmarks: np.ndarray  # float32 [M, 5, 2]
    faceness: np.ndarray  # float32 [M]

    def __len__(self) -> int:
        return len(self.names)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def read_faces(layout: IjbLayout) -> IjbFaces:
    """Join ``face_tid_mid`` and ``name_5pts_score`` (same faces; matched by image name)."""
    names, templates, medias = [], [], []
    for number, line in enumerate(_lines(layout.face_tid_mid), 1):
        parts = line.split()
        try:
            if len(parts) != 3:
                raise ValueError
            templates.append(int(parts[1]))
            medias.append(int(parts[2]))
        except ValueError:
            raise DataError(
                f"{layout.face_tid_mid} line {number}: expected '<image> <template> <media>', got {line!r}"
            ) from None
        names.append(parts[0])
    landmark_rows: dict[str, tuple[list[float], float]] = {}
    for number, line in enumerate(_lines(layout.name_5pts_score), 1):
        parts = line.split()
        try:
            if len(parts) != 12:
                raise ValueError
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataError(
                f"{layout.name_5pts_score} line {number}: expected '<image> x1 y1 ... x5 y5 <score>' "
                f"(12 fields), got {line!r}"
            ) from None
        landmark_rows[parts[0]] = (values[:10], values[10])
    landmarks = np.empty((len(names), 10), dtype=np.float32)
    faceness = np.empty(len(names), dtype=np.float32)
    for i, name in enumerate(names):
        row = landmark_rows.get(name)
        if row is None:
            raise DataError(
                f"{layout.name_5pts_score}: no landmarks for image {name!r} of {layout.face_tid_mid}"
            )
        landmarks[i], faceness[i] = row
    return IjbFaces(
        names=names,
        templates=np.asarray(templates, dtype=np.int64),
        medias=np.asarray(medias, dtype=np.int64),
        landmarks=landmarks.reshape(-1, 5, 2),
        faceness=faceness,
    )


def _parse_int_table(path: Path, columns: int) -> np.ndarray:
    """A whitespace-separated integer table ``[rows, columns]``; fast for IJB-C's 15.6M lines."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(text, dtype=np.int64, sep=" ")  # text mode: not deprecated
    except (ValueError, DeprecationWarning):
        values = None
    num_lines = text.count(b"\n") + (0 if text.endswith(b"\n") or not text else 1)
    if values is None or values.size != num_lines * columns:
        # slow path only to name the first bad line (blank lines also land here and are fine)
        for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
            parts = line.split()
            if parts and (len(parts) != columns or not all(p.lstrip("-").isdigit() for p in parts)):
                raise DataError(f"{path} line {number}: expected {columns} integers, got {line.strip()!r}")
        if values is None or values.size % columns:
            raise DataError(f"{path}: not a table of {columns} integers per line")
    return values.reshape(-1, columns)


def read_pairs(layout: IjbLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(template1 [P], template2 [P], is_genuine [P] bool)`` from the 1:1 pair list."""
    table = _parse_int_table(layout.template_pair_label, 3)
    if len(table) == 0:
        raise DataError(f"{layout.template_pair_label}: no pairs")
    labels = table[:, 2]
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        raise DataError(
            f"{layout.template_pair_label} line {bad[0] + 1}: label {labels[bad[0]]} is not 0 or 1"
        )
    return table[:, 0], table[:, 1], labels.astype(bool)


def read_template_subjects(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(templates [K], subjects [K])``, one row per distinct template, from a 1:N protocol CSV.

    Columns are found by the ``TEMPLATE_ID`` and ``SUBJECT_ID`` header names (the first two
    columns when there is no header). A template listed with two subjects is an error.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        raise DataError(f"{path}: empty")
    header = [h.strip().upper() for h in rows[0]]
    t_col, s_col, first = 0, 1, 0
    if "TEMPLATE_ID" in header:
        if "SUBJECT_ID" not in header:
            raise DataError(f"{path}: header has TEMPLATE_ID but no SUBJECT_ID column")
        t_col, s_col, first = header.index("TEMPLATE_ID"), header.index("SUBJECT_ID"), 1
    subject_of: dict[int, int] = {}
    for number, row in enumerate(rows[first:], first + 1):
        try:
            template, subject = int(row[t_col]), int(row[s_col])
        except (ValueError, IndexError):
            raise DataError(
                f"{path} line {number}: no integer template and subject id in {row[:3]}"
            ) from None
        if subject_of.setdefault(template, subject) != subject:
            raise DataError(
                f"{path} line {number}: template {template} listed for subject "
                f"{subject_of[template]} and for subject {subject}"
            )
    templates = np.fromiter(subject_of.keys(), dtype=np.int64, count=len(subject_of))
    subjects = np.fromiter(subject_of.values(), dtype=np.int64, count=len(subject_of))
    order = np.argsort(templates)
    return templates[order], subjects[order]
