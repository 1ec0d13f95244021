"""Mixed precision policy: which autocast dtype the backbone runs in and whether grads are scaled.

CPU runs use fp32: bf16 autocast on the CPUs we measured is 5-40x slower. On CUDA, ``auto``
picks bf16 where the GPU supports it (no loss scaling needed) and fp16 + a grad scaler
otherwise. The head always computes in fp32 on fp32 embeddings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from facescale.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | fp16 | bf16
    device_type: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.name)

    @property
    def uses_grad_scaler(self) -> bool:
        return self.name == "fp16"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        dtype = self.autocast_dtype
        if dtype is None:
            yield
        else:
            with torch.autocast(self.device_type, dtype=dtype):
                yield


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """``requested`` is the ``train.precision`` value; fp16 on CPU is refused (no CPU grad scaler)."""
    if requested == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    else:
        name = requested
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision 'fp16' needs a CUDA device, got {device}; use fp32 or bf16")
    return Precision(name, device.type)
