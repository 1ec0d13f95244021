"""Face embedders: one interface over torch backbones, ONNX models and dlib's real-face ResNet.

Every embedder maps aligned faces (uint8 ``[N, 112, 112, 3]`` RGB, ArcFace template) to raw
float32 ``[N, D]`` embeddings and carries a ``fingerprint`` of its weights, so a gallery built
with one model refuses queries from another. A torch backbone and its ONNX export share the
fingerprint (the export records the one of the weights it came from).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from facescale.deploy.alignment import align_face
from facescale.errors import FacescaleError
from facescale.models.inference import batches
from facescale.models.preprocess import normalize_array

if TYPE_CHECKING:
    import torch

    from facescale.deploy.mtcnn import Detections

FACE_SIZE = 112
ONNX_FINGERPRINT_KEY = "facescale.weights_fingerprint"


@runtime_checkable
class Embedder(Protocol):
    """``embed(images uint8 [N, 112, 112, 3] RGB) -> float32 [N, D]`` raw (not normalised)."""

    name: str
    fingerprint: str
    embedding_size: int

    def embed(self, images: np.ndarray) -> np.ndarray: ...

    def embed_faces(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        """Embeddings ``[K, D]`` of the K detected faces of one photo (uint8 ``[H, W, 3]`` RGB)."""
        ...


def check_aligned_batch(images: np.ndarray) -> np.ndarray:
    """Validate an aligned-face batch: uint8 ``[N, 112, 112, 3]``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or images.dtype != np.uint8:
        raise FacescaleError(
            f"expected aligned faces as uint8 [N, {FACE_SIZE}, {FACE_SIZE}, 3], got {images.dtype} "
            f"{list(images.shape)}"
        )
    return images


def align_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """The detected faces of ``image`` aligned to the ArcFace template: uint8 ``[K, 112, 112, 3]``."""
    faces = [align_face(image, points, FACE_SIZE) for points in detections.landmarks]
    if not faces:
        return np.zeros((0, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    return np.stack(faces)


def state_dict_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, shapes and fp32 values of every tensor, in name order (first 16 hex)."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        digest.update(f"{key}:{list(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchEmbedder:
    """A backbone module run in eval mode, fp32, on ``device``, in batches of ``batch_size``."""

    def __init__(self, module: torch.nn.Module, name: str, device: str = "cpu", batch_size: int = 64) -> None:
        import torch

        self.device = torch.device(resolve_device(device))
        self.module = module.float().eval().to(self.device)
        self.name = name
        self.batch_size = batch_size
        self.fingerprint = state_dict_fingerprint(self.module.state_dict())
        with torch.inference_mode():
            probe = self.module(torch.zeros(1, 3, FACE_SIZE, FACE_SIZE, device=self.device))
        self.embedding_size = int(probe.shape[1])

    def embed(self, images: np.ndarray) -> np.ndarray:
        from facescale.models.inference import embed_in_batches

        images = check_aligned_batch(images)
        # [0, D] for no faces, so a photo without faces stacks with the others.
        return embed_in_batches(self.module, images, self.batch_size, self.device, self.embedding_size)

    def embed_faces(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        return self.embed(align_detections(image, detections))


def check_external_data(model: Any, path: Path) -> None:
    """Refuse an ONNX model whose external tensor data lies outside its own folder.

    onnxruntime reads each external tensor from ``location`` relative to the model file; a
    crafted ``../../etc/shadow`` or absolute path (or a symlink out of the folder) would make it
    read any file the user can, so every location must resolve inside the model's folder.
    """
    import onnx

    folder = path.resolve().parent
    tensors = list(model.graph.initializer)
    for node in model.graph.node:  # Constant nodes can hold external tensors too
        tensors.extend(a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise FacescaleError(
                f"ONNX model {path}: tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                f"model's folder {folder}; refusing to load it"
            )


class OnnxEmbedder:
    """An ONNX model taking the normalised ``[N, 3, 112, 112]`` tensor (insightface convention)."""

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 64) -> None:
        import onnx
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FacescaleError(f"ONNX model {path} does not exist")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise FacescaleError(f"{path} is not a readable ONNX model: {e}") from None
        check_external_data(model, path)
        providers = ["CPUExecutionProvider"]
        on_gpu = resolve_device(device).startswith("cuda")
        if on_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise FacescaleError(f"ONNX model {path} has {len(inputs)} inputs; expected one image input")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1:] != [3, FACE_SIZE, FACE_SIZE]:
            raise FacescaleError(
                f"ONNX model {path} takes input {inputs[0].name!r} of shape {shape}; facescale needs "
                f"[N, 3, {FACE_SIZE}, {FACE_SIZE}] (aligned 112x112 RGB faces, NCHW)"
            )
        self.input_name = inputs[0].name
        fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.batch_size = fixed_batch or batch_size
        self.fixed_batch = fixed_batch
        self.name = f"onnx:{path.name}"
        props = {p.key: p.value for p in model.metadata_props}
        self.fingerprint = props.get(ONNX_FINGERPRINT_KEY) or file_fingerprint(path)
        probe = self._run(np.zeros((self.fixed_batch or 1, 3, FACE_SIZE, FACE_SIZE), dtype=np.float32))
        self.embedding_size = int(probe.shape[1])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = check_aligned_batch(images)
        out = np.zeros((len(images), self.embedding_size), dtype=np.float32)
        for part in batches(len(images), self.batch_size):
            x = normalize_array(images[part])
            n = len(x)
            if self.fixed_batch and n < self.fixed_batch:  # a fixed-batch model: pad the last batch
                x = np.concatenate([x, np.zeros((self.fixed_batch - n, *x.shape[1:]), np.float32)])
            out[part] = self._run(np.ascontiguousarray(x))[:n]
        return out

    def embed_faces(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        return self.embed(align_detections(image, detections))
