"""Real photos that ship inside installed packages, the detector and the dlib embedder.

No face dataset can be downloaded here; scikit-image ships one portrait (``astronaut``) and the
insightface wheel ships a group photo of six people (``data/images/t1.jpg``). Fixtures skip with
the install line when a package is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

INSIGHTFACE_INSTALL = 'pip install --no-deps "insightface==2.1"'


def insightface_images_dir() -> Path | None:
    """``insightface/data/images`` located without importing insightface (it pulls in many packages)."""
    spec = importlib.util.find_spec("insightface")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location) / "data" / "images"
        if (folder / "t1.jpg").is_file():
            return folder
    return None


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def group_photo_path() -> Path:
    folder = insightface_images_dir()
    if folder is None:
        pytest.skip(f"the group photo ships in the insightface wheel; install it with: {INSIGHTFACE_INSTALL}")
    return folder / "t1.jpg"


@pytest.fixture(scope="session")
def group_photo(group_photo_path: Path) -> np.ndarray:
    return read_rgb(group_photo_path)


@pytest.fixture(scope="session")
def detector():  # type: ignore[no-untyped-def]
    from facescale.deploy.mtcnn import MTCNN, mtcnn_weights_dir
    from facescale.errors import FacescaleError

    try:
        mtcnn_weights_dir()
    except FacescaleError as e:
        pytest.skip(str(e))
    return MTCNN()


@pytest.fixture(scope="session")
def dlib_embedder():  # type: ignore[no-untyped-def]
    from facescale.deploy.embedder_factory import open_embedder
    from facescale.errors import FacescaleError

    try:
        return open_embedder("dlib")
    except FacescaleError as e:
        pytest.skip(str(e))
