"""Mixed precision policy: which autocast dtype the backbone runs in and whether grads are scaled.

CPU runs use fp32: bf16 autocast on the CPUs we measured is 5-40x slower. On CUDA, ``auto``
picks bf16 on GPUs with native bf16 (compute capability 8.0 and later: A100, H100, RTX 30xx+;
no loss scaling needed) and fp16 + a grad scaler below (V100, T4). It does not ask
``torch.cuda.is_bf16_supported()``: that also says yes where bf16 is only emulated, several times
slower. An explicit ``bf16`` below sm80 runs, with a warning. The head always computes in fp32
on fp32 embeddings.

With a grad scaler, a step whose backbone gradients overflowed is skipped by ``scaler.step``;
``head_update_ok`` gives the head the same verdict as a device tensor, so the centres skip that
step too (inf/NaN embeddings would otherwise poison every sampled centre for good).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from facescale.errors import ConfigError
from facescale.models.base import AMP_DTYPES


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | fp16 | bf16
    device_type: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES.get(self.name)  # None for fp32

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
            name = "bf16" if native_bf16(device) else "fp16"
        else:
            name = "fp32"
    else:
        name = requested
    if name == "bf16" and device.type == "cuda" and not native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        warnings.warn(
            f"train.precision 'bf16' on a GPU of compute capability {major}.{minor}: bf16 is emulated "
            "below 8.0 (several times slower); 'auto' picks fp16 with a grad scaler there",
            stacklevel=2,
        )
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision 'fp16' needs a CUDA device, got {device}; use fp32 or bf16")
    return Precision(name, device.type)


def native_bf16(device: torch.device) -> bool:
    """True on GPUs whose tensor cores do bf16 (compute capability >= 8.0)."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def head_update_ok(
    scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer, features: torch.Tensor
) -> torch.Tensor | None:
    """0-dim bool on the device: may the head update this step? None when no scaler is used.

    Call after ``scaler.step(optimizer)`` and before ``scaler.update()``. False when the scaler
    found inf/NaN in the backbone's gradients (it skipped the backbone) or when the embeddings
    [B, D] or their gradient are not finite. No host sync: the verdict stays on the device.
    """
    if not scaler.is_enabled():
        return None
    # What scaler.step decided on (torch keeps it until update()).
    found = scaler._found_inf_per_device(optimizer)
    ok = torch.isfinite(features.detach()).all()
    if features.grad is not None:
        ok = ok & torch.isfinite(features.grad).all()
    for flag in found.values():
        ok = ok & (flag.to(ok.device) == 0)
    return ok
