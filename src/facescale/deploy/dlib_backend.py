"""dlib's pretrained face-recognition ResNet (128-d) as an optional real-face embedder.

facescale's own models are trained on SynthFace and are not meant for real photos; dlib's
network is the one real-face embedding that installs from the package registry (``dlib-bin``
for the library, ``face-recognition-models`` for the weights), so embed / gallery / recognize
can be shown on real photos with ``--model dlib``. dlib aligns faces its own way (a 5-point
shape predictor and a 150x150 chip with 25% padding), so faces are passed to it through that
path rather than through the ArcFace 112x112 crop.

The weights package is located without importing it (its ``__init__`` needs ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facescale.deploy.embedder import check_aligned_batch
from facescale.errors import FacescaleError

if TYPE_CHECKING:
    from facescale.deploy.mtcnn import Detections

INSTALL_HINT = (
    'pip install "dlib-bin>=19.24" "face-recognition-models>=0.3"  (or the facescale[realface] extra)'
)
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
# Where an ArcFace-aligned 112x112 face sits when it is pasted in the middle of a 224 canvas:
# the template spans about x 38..74, y 51..92, so this box covers brows to chin like a detector box.
_CANVAS = 224
_ALIGNED_FACE_BOX = (56 + 18, 56 + 24, 56 + 94, 56 + 108)


def dlib_models_dir() -> Path:
    """The ``face_recognition_models/models`` folder, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location) / "models"
        if (folder / RECOGNITION_MODEL).is_file() and (folder / SHAPE_MODEL).is_file():
            return folder
    raise FacescaleError(
        f"the dlib face-recognition weights are not installed; install them with: {INSTALL_HINT}"
    )


class DlibEmbedder:
    """128-d embeddings from dlib's ResNet; faces are aligned with dlib's 5-point predictor."""

    name = "dlib:resnet_v1"
    embedding_size = 128
    # dlib calls two faces the same person below Euclidean distance 0.6 between raw descriptors,
    # whose norms are about 1.4-1.6 on photos: cosine 1 - 0.6^2 / (2 * 1.45^2) ~= 0.91. A little
    # stricter, since a gallery names people rather than comparing two photos.
    suggested_threshold = 0.93

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as e:
            raise FacescaleError(
                f"the dlib backend needs the dlib library; install it with: {INSTALL_HINT}"
            ) from e
        folder = dlib_models_dir()
        self._dlib = dlib
        self._shapes = dlib.shape_predictor(str(folder / SHAPE_MODEL))
        self._net = dlib.face_recognition_model_v1(str(folder / RECOGNITION_MODEL))
        from facescale.deploy.embedder import file_fingerprint

        self.fingerprint = file_fingerprint(folder / RECOGNITION_MODEL)

    def _describe(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        image = np.ascontiguousarray(image)
        shapes = dlib.full_object_detections()
        for x1, y1, x2, y2 in np.round(boxes).astype(int):
            shapes.append(self._shapes(image, dlib.rectangle(int(x1), int(y1), int(x2), int(y2))))
        if len(shapes) == 0:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        return np.asarray(self._net.compute_face_descriptor(image, shapes), dtype=np.float32)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """``[N, 112, 112, 3]`` ArcFace-aligned faces -> ``[N, 128]`` (each pasted on a black canvas
        so dlib's wider chip fits)."""
        images = check_aligned_batch(images)
        out = np.zeros((len(images), self.embedding_size), dtype=np.float32)
        offset = (_CANVAS - images.shape[1]) // 2
        box = np.asarray([_ALIGNED_FACE_BOX], dtype=np.float64)
        for i, face in enumerate(images):
            canvas = np.zeros((_CANVAS, _CANVAS, 3), dtype=np.uint8)
            canvas[offset : offset + face.shape[0], offset : offset + face.shape[1]] = face
            out[i] = self._describe(canvas, box)[0]
        return out

    def embed_faces(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        """Embeddings ``[K, 128]`` of the detected faces, aligned by dlib from the MTCNN boxes."""
        return self._describe(image, detections.boxes)
