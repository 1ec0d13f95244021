"""Export a backbone to ONNX (verified against torch with onnxruntime) and to safetensors.

The ONNX model follows insightface's released models: one input ``input`` of shape
``[N, 3, 112, 112]`` (N dynamic), RGB, already normalised as ``(pixel - 127.5) / 127.5``;
one output ``embedding`` ``[N, D]`` (raw, not L2-normalised). Weights are fp32 whatever
precision the model was trained in, and the file is self-contained (no external data). The
convention and the backbone spec are recorded in the model's ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facescale.atomic import atomic_output
from facescale.deploy.embedder import FACE_SIZE, ONNX_FINGERPRINT_KEY, state_dict_fingerprint
from facescale.errors import FacescaleError

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
DEFAULT_OPSET = 18
INPUT_CONVENTION = (
    "RGB, 112x112 aligned to the ArcFace 5-point template, NCHW float32, (pixel - 127.5) / 127.5; "
    "output: raw embedding [N, D], L2-normalise before comparing"
)


def inference_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU fp32 eval-mode copy with mixed precision switched off (the training module is untouched)."""
    module = copy.deepcopy(module).cpu().float().eval()
    for sub in module.modules():
        if hasattr(sub, "amp_dtype"):  # facescale backbones run their body under autocast when set
            setattr(sub, "amp_dtype", None)  # noqa: B010 (not every module declares it)
    return module


@dataclass
class ParityCheck:
    """onnxruntime vs torch on random faces: max abs difference per batch size.

    Passes when the worst difference is at most ``tolerance`` times the largest output
    magnitude (at least 1): an untrained network's outputs can be in the millions.
    """

    max_abs_diff: dict[int, float] = field(default_factory=dict)
    max_abs_value: float = 0.0
    tolerance: float = 1e-3

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0

    @property
    def relative(self) -> float:
        return self.worst / max(self.max_abs_value, 1.0)

    @property
    def passed(self) -> bool:
        return self.relative <= self.tolerance

    def describe(self) -> str:
        parts = ", ".join(f"batch {b}: {d:.3g}" for b, d in self.max_abs_diff.items())
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"onnxruntime vs torch max |diff| {parts}; relative to max |output| {self.max_abs_value:.3g}: "
            f"{self.relative:.2g} (tolerance {self.tolerance:.2g}) {verdict}"
        )


def random_faces(batch: int, seed: int) -> np.ndarray:
    """uint8 ``[batch, 112, 112, 3]`` noise images: any pixel value a real face can have."""
    return np.random.default_rng(seed).integers(0, 256, (batch, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and deprecation chatter (errors still raise)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_torchscript(module: torch.nn.Module, example: torch.Tensor, opset: int) -> Any:
    import onnx

    buffer = io.BytesIO()  # the tracing exporter writes to file objects too
    torch.onnx.export(
        module,
        (example,),
        buffer,  # type: ignore[arg-type]
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(module: torch.nn.Module, example: torch.Tensor, opset: int) -> Any:
    program = torch.onnx.export(
        module,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    assert program is not None
    return program.model_proto


EXPORTERS = ("torchscript", "dynamo")


def to_onnx_bytes(
    module: torch.nn.Module,
    spec: dict[str, Any],
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    extra_metadata: dict[str, str] | None = None,
) -> bytes:
    """Serialised ONNX model of ``module`` (an :func:`inference_copy`) with a dynamic batch axis.

    ``exporter``: ``"torchscript"`` (torch's tracing exporter: several times faster on these
    convolutional nets, e.g. r200 in 11 s instead of 64 s on one core) or ``"dynamo"`` (the
    torch.export-based one, torch's default since 2.9).
    """
    import onnx

    if exporter not in EXPORTERS:
        raise FacescaleError(f"unknown ONNX exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    example = torch.zeros(2, 3, FACE_SIZE, FACE_SIZE)
    try:
        with _quiet_exporter():
            export = _export_torchscript if exporter == "torchscript" else _export_dynamo
            model = export(module, example, opset)
    except Exception as e:  # the exporter's own errors are long; keep the cause
        raise FacescaleError(f"ONNX export of backbone {spec.get('name')!r} failed: {e}") from e
    metadata = {
        "facescale.input_convention": INPUT_CONVENTION,
        "facescale.backbone": json.dumps(spec, sort_keys=True),
        ONNX_FINGERPRINT_KEY: state_dict_fingerprint(module.state_dict()),
        **(extra_metadata or {}),
    }
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "facescale"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_parity(
    module: torch.nn.Module, onnx_bytes: bytes, batch_sizes: tuple[int, ...] = (1, 3), tolerance: float = 1e-3
) -> ParityCheck:
    """Run torch and onnxruntime on the same random faces at each batch size and compare.

    ``tolerance`` bounds the max abs difference relative to the largest output magnitude.
    """
    import onnxruntime as ort

    from facescale.models.preprocess import to_model_input

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    check = ParityCheck(tolerance=tolerance)
    largest = 0.0
    for i, batch in enumerate(batch_sizes):
        x = to_model_input(random_faces(batch, seed=i))
        with torch.inference_mode():
            expected = module(x).float().numpy()
        got = session.run(None, {INPUT_NAME: x.numpy()})[0]
        if got.shape != expected.shape:
            raise FacescaleError(f"ONNX output shape {got.shape} != torch output shape {expected.shape}")
        check.max_abs_diff[batch] = float(np.abs(got - expected).max())
        largest = max(largest, float(np.abs(expected).max()))
    check.max_abs_value = largest
    return check


def export_onnx(
    module: torch.nn.Module,
    spec: dict[str, Any],
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    batch_sizes: tuple[int, ...] = (1, 3),
    tolerance: float = 1e-3,
    exporter: str = "torchscript",
    extra_metadata: dict[str, str] | None = None,
) -> ParityCheck:
    """Export ``module`` to ``out`` and verify it; ``out`` is written only when the check passes.

    ``spec``: ``{"name": ..., "kwargs": {...}}`` of the backbone; ``extra_metadata`` goes into the
    model's ``metadata_props`` (e.g. the verification thresholds). Raises FacescaleError (naming
    the worst difference) when onnxruntime and torch disagree beyond ``tolerance``.
    """
    module = inference_copy(module)
    data = to_onnx_bytes(module, spec, opset, exporter, extra_metadata)
    check = check_parity(module, data, batch_sizes, tolerance)
    if not check.passed:
        raise FacescaleError(f"{out}: not written, {check.describe()}")
    with atomic_output(out) as temp:
        temp.write_bytes(data)
    return check


def export_safetensors(module: torch.nn.Module, spec: dict[str, Any], out: str | Path) -> None:
    """fp32 weights (and buffers) of ``module`` to ``out``, with the backbone spec in the metadata
    under ``facescale.backbone`` (JSON ``{"name": ..., "kwargs": ...}``) and the weights' fingerprint."""
    from facescale.models.factory import BackboneSpec
    from facescale.models.loading import save_safetensors

    copy = inference_copy(module)
    fingerprint = state_dict_fingerprint({k: v.detach().contiguous() for k, v in copy.state_dict().items()})
    save_safetensors(copy, BackboneSpec.from_dict(spec, str(out)), out, {ONNX_FINGERPRINT_KEY: fingerprint})


def describe_onnx(path: str | Path) -> dict[str, Any]:
    """Input/output names and shapes and the metadata of an ONNX file (for messages and tests)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def shape(value: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {
        "inputs": {v.name: shape(v) for v in model.graph.input},
        "outputs": {v.name: shape(v) for v in model.graph.output},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "initializer_dtypes": sorted({int(t.data_type) for t in model.graph.initializer}),
        "external_data": any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer),
    }


def source_spec(spec: Any) -> dict[str, Any]:
    """``{"name", "kwargs"}`` of a models.BackboneSpec, without options that only affect training."""
    if hasattr(spec, "for_inference"):
        spec = spec.for_inference()
    return {"name": str(spec.name), "kwargs": dict(spec.kwargs)}
