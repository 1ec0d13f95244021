"""``open_embedder``: the one place that turns a model name or path into an ``Embedder``.

It sits above every backend (``embedder.TorchEmbedder``, ``embedder.OnnxEmbedder``,
``dlib_backend.DlibEmbedder``) so the module defining the interface imports none of its
implementations.
"""

from __future__ import annotations

from pathlib import Path

from facescale.deploy.embedder import Embedder, OnnxEmbedder, TorchEmbedder
from facescale.errors import FacescaleError


def open_embedder(
    source: str, backbone: str | None = None, device: str = "auto", batch_size: int = 64
) -> Embedder:
    """An embedder for ``source``.

    ``source``: ``"dlib"`` (dlib's 128-d real-face ResNet, optional), a ``.onnx`` file
    (onnxruntime), or anything ``facescale.models.loading.load_backbone`` reads: a facescale run
    directory, a checkpoint (``trainer.pt``), an insightface ``backbone.pth`` (``backbone`` names
    the architecture when it cannot be inferred) or a ``.safetensors`` file.
    """
    if batch_size < 1:
        raise FacescaleError(f"batch_size must be >= 1, got {batch_size}")
    if source == "dlib":
        from facescale.deploy.dlib_backend import DlibEmbedder

        return DlibEmbedder()
    if str(source).lower().endswith(".onnx"):
        return OnnxEmbedder(source, device=device, batch_size=batch_size)
    if not Path(source).exists():
        raise FacescaleError(
            f"model {source} does not exist (expected a run directory, a checkpoint, a backbone.pth, "
            "a .safetensors or .onnx file, or 'dlib')"
        )
    from facescale.models.loading import load_backbone

    module, spec = load_backbone(source, backbone)
    return TorchEmbedder(module, name=f"torch:{spec.name}", device=device, batch_size=batch_size)
