"""int8 ONNX models: onnxruntime static quantization, calibrated on real faces, checked against fp32.

Static quantization fixes every activation's int8 scale from the value ranges seen on a few
hundred calibration faces (MinMax calibration), so at run time convolutions and matrix
products run in int8 (VNNI on recent x86 CPUs) with no range computation per call. Formats:

- ``qdq`` (default): QuantizeLinear/DequantizeLinear pairs around each op; onnxruntime fuses
  them into int8 kernels. Weights per output channel by default (``per_channel``): a
  depthwise convolution's channels differ too much in range for one scale per tensor.
- ``qoperator``: QLinearConv/QLinearMatMul operators written directly.

``check_int8`` is the parity check: cosine between fp32 and int8 embeddings of faces held out
from calibration, and (given verification sets) the accuracy of both models by the protocol.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facescale.errors import DataError, FacescaleError
from facescale.models.embeddings import l2_normalize
from facescale.models.preprocess import normalize_array

FORMATS = ("qdq", "qoperator")
ONNX_INT8_KEY = "facescale.int8"


def calibration_faces(dataset: str | Path, count: int, skip: int = 0) -> np.ndarray:
    """``count`` aligned faces uint8 ``[count, 112, 112, 3]`` spread evenly over ``dataset`` (any
    collection ``facescale embed`` reads: a rec, an image folder, a list file, a verification bin).

    ``skip`` shifts the picks by that many items, so a second call draws faces the first did not.
    """
    from facescale.data.image_codec import decode_image
    from facescale.deploy.embedder import FACE_SIZE
    from facescale.deploy.extract import open_collection

    collection = open_collection(dataset)
    if len(collection) < count:
        raise FacescaleError(f"{dataset}: {len(collection)} images, fewer than the {count} asked for")
    picks = (np.linspace(0, len(collection) - 1, count).astype(np.int64) + skip) % len(collection)
    faces = []
    for i in picks.tolist():
        where = f"{collection.source}: {collection.names[i]}"
        image = decode_image(collection.read(i), where)
        if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
            raise DataError(f"{where}: {image.shape[1]}x{image.shape[0]}, not an aligned 112x112 face")
        faces.append(image)
    return np.stack(faces)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over batches of normalised faces."""

    def __init__(self, input_name: str, faces: np.ndarray, batch: int = 16) -> None:
        self.batches: Iterator[np.ndarray] = iter(
            normalize_array(faces[i : i + batch]) for i in range(0, len(faces), batch)
        )
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch)}


def quantize_onnx(
    fp32: bytes, faces: np.ndarray, quant_format: str = "qdq", per_channel: bool = True
) -> bytes:
    """The int8 model (serialised) of ``fp32``, calibrated on ``faces`` uint8 ``[N, 112, 112, 3]``.

    ``per_channel``: one weight scale per output channel (else per tensor).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant_format not in FORMATS:
        raise FacescaleError(f"unknown int8 format {quant_format!r}; choose one of {', '.join(FORMATS)}")
    model = onnx.load_from_string(fp32)
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="facescale-int8-") as folder:
        source, prepared, target = (Path(folder) / n for n in ("fp32.onnx", "prep.onnx", "int8.onnx"))
        source.write_bytes(fp32)
        # Shape inference and graph folding first, as onnxruntime recommends before quantizing.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a warning per 1-d weight it leaves alone
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(target),
                _Reader(input_name, faces),
                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8 if quant_format == "qoperator" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(target))
    for prop in model.metadata_props:  # keep the convention, backbone spec, fingerprint, thresholds
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key=ONNX_INT8_KEY, value=f"{quant_format}, per_channel={per_channel}")
    return bytes(quantized.SerializeToString())


def session(model: bytes | str, threads: int = 0) -> Any:
    """An onnxruntime CPU session (``threads`` 0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def session_embed(sess: Any, batch: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """``uint8 [N, 112, 112, 3] -> float32 [N, D]`` through ``sess``."""
    name = sess.get_inputs()[0].name

    def embed(images: np.ndarray) -> np.ndarray:
        out = [
            sess.run(None, {name: np.ascontiguousarray(normalize_array(images[i : i + batch]))})[0]
            for i in range(0, len(images), batch)
        ]
        return np.concatenate(out).astype(np.float32)

    return embed


@dataclass
class Int8Check:
    """fp32 vs int8: cosine of their embeddings of the same faces, and verification accuracy per set."""

    cosine_mean: float
    cosine_min: float
    faces: int
    accuracy: dict[str, tuple[float, float]] = field(default_factory=dict)  # set: (fp32, int8)
    max_drop_points: float = 0.3
    min_cosine: float = 0.95

    @property
    def worst_drop(self) -> float:
        """Largest accuracy loss in points (percent) over the sets (0 without sets)."""
        return max((100 * (a - b) for a, b in self.accuracy.values()), default=0.0)

    @property
    def passed(self) -> bool:
        return self.worst_drop <= self.max_drop_points and self.cosine_mean >= self.min_cosine

    def describe(self) -> str:
        lines = [
            f"int8 vs fp32 cosine on {self.faces} held-out faces: mean {self.cosine_mean:.4f}, "
            f"min {self.cosine_min:.4f} (required mean >= {self.min_cosine})"
        ]
        for name, (a, b) in self.accuracy.items():
            lines.append(
                f"[{name}] accuracy fp32 {a * 100:.2f}%  int8 {b * 100:.2f}%  ({100 * (b - a):+.2f} points)"
            )
        verdict = "ok" if self.passed else "FAILED"
        lines.append(
            f"int8 check {verdict} (worst accuracy change {-self.worst_drop:+.2f} points, "
            f"a drop of {self.max_drop_points} allowed)"
        )
        return "\n".join(lines)


def check_int8(
    fp32: bytes,
    int8: bytes,
    faces: np.ndarray,
    sets: list[Any] | None = None,
    max_drop_points: float = 0.3,
    min_cosine: float = 0.95,
    accuracy: Callable[[Callable[[np.ndarray], np.ndarray], Any], float] | None = None,
) -> Int8Check:
    """Compare the two models on ``faces`` (held out from calibration) and on verification ``sets``
    (objects with ``name``, ``images``, ``issame``, as ``facescale.eval.sets.load_set`` gives).

    ``accuracy(embed, set)`` scores one model on one set (the caller passes the verification
    protocol: evaluation sits above deployment, so this module does not import it).
    """
    if sets and accuracy is None:
        raise FacescaleError("check_int8: verification sets given without an accuracy function")
    embed32, embed8 = session_embed(session(fp32)), session_embed(session(int8))
    a, b = l2_normalize(embed32(faces)), l2_normalize(embed8(faces))
    cosine = np.einsum("ij,ij->i", a, b)
    check = Int8Check(float(cosine.mean()), float(cosine.min()), len(faces), {}, max_drop_points, min_cosine)
    for vset in sets or []:
        assert accuracy is not None
        check.accuracy[vset.name] = (accuracy(embed32, vset), accuracy(embed8, vset))
    return check
