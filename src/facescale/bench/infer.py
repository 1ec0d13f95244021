"""Inference speed of backbones: torch eager (the baseline) beside onnxruntime, same weights.

For each backbone: latency of one face (median over repeats, milliseconds) and throughput at
batch 64 (images per second). The ONNX model is exported in memory from the same module.
Untrained weights are used with batch-norm statistics set from one random batch, so values
stay in the normal range (denormal or overflowing activations would distort the timing).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from facescale.bench.timing import time_calls
from facescale.deploy.onnx_export import INPUT_NAME, inference_copy, random_faces, to_onnx_bytes
from facescale.models.preprocess import to_model_input


@dataclass
class InferenceTiming:
    """One (backbone, runtime) row: ``latency_ms`` at batch 1 (median), ``throughput`` images/s."""

    backbone: str
    runtime: str
    latency_ms: float
    throughput: float
    batch: int


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set every batch-norm layer's running statistics from one forward of ``images``; eval mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def _measure(
    backbone: str,
    runtime: str,
    run: Callable[[np.ndarray], object],
    batch: int,
    latency_repeats: int,
    throughput_repeats: int,
) -> InferenceTiming:
    one = to_model_input(random_faces(1, seed=1)).numpy()
    many = to_model_input(random_faces(batch, seed=2)).numpy()
    latency = statistics.median(time_calls(lambda: run(one), latency_repeats, warmup=2))
    total = sum(time_calls(lambda: run(many), throughput_repeats, warmup=1))
    return InferenceTiming(backbone, runtime, latency * 1e3, batch * throughput_repeats / total, batch)


def _run_session(sess: object, x: np.ndarray) -> object:
    return sess.run(None, {INPUT_NAME: x})  # type: ignore[attr-defined]


def bench_backbone(
    name: str,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 64,
    latency_repeats: int = 20,
    throughput_repeats: int = 3,
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "int8"),
    int8_formats: tuple[str, ...] = ("qdq",),
) -> list[InferenceTiming]:
    """Time backbone ``name`` under each runtime (torch eager on ``device``; onnxruntime on CPU,
    or CUDA when ``device`` is a GPU and the CUDA provider is installed; ``int8``: the same ONNX
    model statically quantized by onnxruntime, per format of ``int8_formats``, on CPU)."""
    import onnxruntime as ort

    from facescale.models import build_backbone

    torch.manual_seed(0)
    model = calibrate_batchnorm(build_backbone(name), to_model_input(random_faces(8, seed=0)))
    model = inference_copy(model)
    rows = []
    if "torch" in runtimes:
        target = model.to(device)

        def run_torch(x: np.ndarray) -> object:
            with torch.inference_mode():
                out = target(torch.from_numpy(x).to(device))
                return out.cpu()  # waits for the GPU, as a caller would

        rows.append(
            _measure(name, f"torch eager ({device})", run_torch, batch, latency_repeats, throughput_repeats)
        )
        model = model.cpu()
    onnx_bytes = (
        to_onnx_bytes(model, {"name": name, "kwargs": {}}) if {"onnxruntime", "int8"} & set(runtimes) else b""
    )
    if "onnxruntime" in runtimes:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(onnx_bytes, options, providers=providers)
        label = "onnxruntime (" + session.get_providers()[0].replace("ExecutionProvider", "").lower() + ")"
        rows.append(
            _measure(
                name,
                label,
                lambda x: session.run(None, {INPUT_NAME: x}),
                batch,
                latency_repeats,
                throughput_repeats,
            )
        )
    for quant_format in int8_formats if "int8" in runtimes else ():
        # aliased: ``session`` above is the fp32 onnxruntime session its lambda reads
        from facescale.deploy.quantize import quantize_onnx
        from facescale.deploy.quantize import session as cpu_session

        # Calibration ranges do not change the speed; the accuracy of int8 on real faces is what
        # `facescale export --int8 --calibrate` checks.
        int8 = cpu_session(quantize_onnx(onnx_bytes, random_faces(32, seed=3), quant_format), threads)
        rows.append(
            _measure(
                name,
                f"onnxruntime int8 {quant_format} (cpu)",
                partial(_run_session, int8),
                batch,
                latency_repeats,
                throughput_repeats,
            )
        )
    return rows


def to_json(row: InferenceTiming) -> str:
    """One JSON line: backbone, runtime, ``latency_ms_batch1``, ``images_per_s_batch64`` (at ``batch``)."""
    import json

    return json.dumps(
        {
            "backbone": row.backbone,
            "runtime": row.runtime,
            "latency_ms_batch1": round(row.latency_ms, 3),
            f"images_per_s_batch{row.batch}": round(row.throughput, 1),
        }
    )


def format_table(rows: list[InferenceTiming]) -> str:
    """A Markdown table; the speed-up is relative to the first runtime of the same backbone."""
    lines = [
        "| backbone | runtime | latency b=1 (ms, median) | throughput b=64 (img/s) | speed-up vs torch |",
        "|---|---|---:|---:|---:|",
    ]
    baseline: dict[str, InferenceTiming] = {}
    for row in rows:
        base = baseline.setdefault(row.backbone, row)
        speedup = base.latency_ms / row.latency_ms, row.throughput / base.throughput
        lines.append(
            f"| {row.backbone} | {row.runtime} | {row.latency_ms:.2f} | {row.throughput:.1f} | "
            f"{speedup[0]:.2f}x latency, {speedup[1]:.2f}x throughput |"
        )
    return "\n".join(lines)
