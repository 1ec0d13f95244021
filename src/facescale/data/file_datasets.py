"""Training sets stored as one file per image.

- ``label_txt`` (PLSC, Arcface-Paddle): ``root/label.txt`` lines ``images/00000001.jpg<TAB>0``,
  paths relative to the root.
- ``image_bin`` (Arcface-Paddle): the same listing pointing at per-image bin files.
- ``image_folder``: one sub-folder per identity; sorted folder names give labels 0..C-1.

Every file stays inside the dataset's folder: a listed path that is absolute or climbs out with
``..`` is a bad record at open, and one that leaves through a symlink is refused when read, so a
crafted ``label.txt`` can neither feed nor leak (in an error message) a file from elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from facescale.data.face_dataset import DATASETS, FaceDataset
from facescale.data.image_bin import read_image_bin
from facescale.errors import DataError

# The files taken for images wherever a folder is scanned (training folders, ``facescale embed``,
# galleries): formats ``image_codec.decode_image`` reads (JPEG via simplejpeg, others via OpenCV).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def iter_list_file(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, path, label or None)`` per line of a list file, skipping blanks and ``#`` comments.

    The one reading of list files, for training (``label.txt``) and ``facescale embed`` alike. A
    tab separates path and label when the line holds one, so paths may contain spaces; otherwise
    the last run of whitespace does, as in Arcface-Paddle's README examples. A line of one field,
    or one ending in a tab (a path with spaces and no label), has no label.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read the list file ({e.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
        name = fields[0].strip()
        if not name:
            raise DataError(f"{path}:{number}: no path before the label in {line!r}")
        label = fields[1].strip() if len(fields) == 2 else ""
        yield number, name, label or None


def parse_label_file(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    """``(relative paths, int64 labels, line numbers)`` of a training list: ``path<TAB>label`` lines.

    Every line needs an integer label; see ``iter_list_file`` for how lines split.
    """
    paths: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    for number, name, label in iter_list_file(path):
        if label is None:
            raise DataError(f"{path}:{number}: expected 'relative/path<TAB>label', got {name!r}")
        try:
            labels.append(int(label))
        except ValueError:
            raise DataError(f"{path}:{number}: label {label!r} is not an integer") from None
        paths.append(name)
        lines.append(number)
    return paths, np.asarray(labels, dtype=np.int64), lines


class ImageFileDataset(FaceDataset):
    """One image file per sample: ``base / paths[i]``.

    Paths are kept as one numpy byte-string array rather than millions of Path objects: a
    5-million-image list then costs ~150 MB instead of gigabytes, and forked loader workers
    share it without touching reference counts (which would copy every page).
    """

    def __init__(
        self,
        root: Path,
        base: Path,
        paths: list[str],
        labels: np.ndarray,
        label_file: Path | None,
        lines: list[int] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__(root, labels)
        self.base = base
        self.paths = np.array([p.encode("utf-8") for p in paths], dtype=np.bytes_)
        self.label_file = label_file
        self.lines = np.asarray(lines if lines is not None else [], dtype=np.int64)
        self.class_names = class_names or []
        self._resolved_base: Path | None = None

    def file(self, i: int) -> Path:
        return self.base / self.paths[i].decode("utf-8")

    def confined_file(self, i: int) -> Path:
        """``file(i)`` once it is known to resolve (symlinks included) inside the dataset's folder."""
        path = self.file(i)
        if self._resolved_base is None:
            self._resolved_base = self.base.resolve()
        try:
            inside = path.resolve().is_relative_to(self._resolved_base)
        except (OSError, RuntimeError) as e:  # a symlink loop
            raise DataError(f"{self.describe(i)}: cannot resolve the path ({e})") from None
        if not inside:
            raise DataError(
                f"{self.describe(i)}: resolves to {path.resolve()}, outside the dataset folder "
                f"{self._resolved_base}"
            )
        return path

    def describe(self, i: int) -> str:
        if self.label_file is not None:
            return f"{self.file(i)} ({self.label_file} line {self.lines[i]})"
        return f"{self.file(i)} (identity {self.labels[i]} {self.class_names[self.labels[i]]!r})"

    def _read_file(self, i: int) -> bytes:
        path = self.confined_file(i)
        try:
            return path.read_bytes()
        except OSError as e:
            raise DataError(f"{self.describe(i)}: cannot read ({e.strerror})") from None

    def read(self, i: int) -> bytes:
        return self._read_file(i)

    def _select(self, keep: np.ndarray) -> None:
        self.paths = self.paths[keep]
        if self.label_file is not None:
            self.lines = self.lines[keep]


class ImageBinDataset(ImageFileDataset):
    """Arcface-Paddle per-image bins listed in ``label.txt``; each read unwraps the bin."""

    def read(self, i: int) -> bytes:
        path = self.confined_file(i)
        if not path.is_file():
            raise DataError(f"{self.describe(i)}: per-image bin file not found")
        return read_image_bin(path)[1]


def _label_file(root: Path) -> tuple[Path, Path]:
    """``(folder the paths are relative to, label file)`` for a root folder or a label file."""
    if root.is_file():
        return root.parent, root
    label_file = root / "label.txt"
    if not label_file.is_file():
        raise DataError(f"{root}: no label.txt (expected lines 'images/00000001.jpg<TAB>0')")
    return root, label_file


def escapes_root(relative: str) -> str | None:
    """Why a listed path would leave the dataset folder (absolute, a drive, ``..``), or None."""
    posix = PurePosixPath(relative.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(relative).drive:
        return "is absolute"
    if ".." in posix.parts:
        return "climbs out with '..'"
    return None


def _listed(root: Path, cls: type[ImageFileDataset]) -> ImageFileDataset:
    base, label_file = _label_file(root)
    relative, labels, lines = parse_label_file(label_file)
    dataset = cls(root, base, relative, labels, label_file, lines)
    for i, name in enumerate(relative):
        why = escapes_root(name)
        if why is not None:  # a bad record: bad_data decides (open_dataset)
            dataset.unreadable[i] = (
                f"{label_file}:{lines[i]}: path {name!r} {why}; paths must stay inside {base}"
            )
    return dataset


@DATASETS.register("label_txt")
def open_label_txt(root: Path) -> ImageFileDataset:
    """Images listed in ``root/label.txt`` (or ``root`` itself when it is the label file)."""
    return _listed(root, ImageFileDataset)


@DATASETS.register("image_bin")
def open_image_bin(root: Path) -> ImageFileDataset:
    """Arcface-Paddle per-image bins listed in ``root/label.txt``."""
    return _listed(root, ImageBinDataset)


def identity_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that hold at least one image, sorted by name (label = position)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (data.root)")
    return [d for d in sorted(root.iterdir()) if d.is_dir() and any(_images_in(d))]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@DATASETS.register("image_folder")
def open_image_folder(root: Path) -> ImageFileDataset:
    """One sub-folder per identity; images inside sorted by name; labels by sorted folder name."""
    paths: list[str] = []
    labels: list[int] = []
    folders = identity_folders(root)
    for label, folder in enumerate(folders):
        for image in _images_in(folder):
            paths.append(f"{folder.name}/{image.name}")
            labels.append(label)
    names = [f.name for f in folders]
    dataset = ImageFileDataset(root, root, paths, np.asarray(labels, dtype=np.int64), None, class_names=names)
    dataset.num_classes = len(folders)
    return dataset
