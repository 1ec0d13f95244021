"""The dtype of the head's three GEMMs (``head.matmul_dtype``), with fp32 accumulation and results.

* ``float32``: full fp32 (CUDA cores on a GPU); the reference for the others.
* ``tf32``: fp32 tensors, TF32 tensor cores on Ampere and later (10-bit mantissa inputs); fp32 on CPU.
* ``bfloat16`` / ``float16``: both operands rounded to 16 bits, products accumulated in fp32. On
  CUDA the result is written in fp32 (``torch.mm(..., out_dtype=float32)``); on a CPU (no such
  kernel) the product comes back in 16 bits and is widened, so the logits carry 16-bit rounding.
* ``auto`` (default): bfloat16 where the hardware has it natively (CUDA sm80+, CPUs with AVX512-BF16
  or AMX), float16 on older GPUs (V100, T4: their tensor cores are fp16), else float32.

The cosine error of each choice against float64 is bounded in tests/heads/test_matmul.py. Heads
with float64 centres (the exactness tests) always compute in float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from facescale.config import CHOICES
from facescale.errors import ConfigError

MATMUL_DTYPES = CHOICES["head.matmul_dtype"]  # auto, float32, tf32, bfloat16, float16
_INPUT_DTYPES = {
    "float32": torch.float32,
    "tf32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_matmul_dtype(name: str, device: torch.device) -> str:
    """``head.matmul_dtype`` -> a concrete choice for ``device`` (``auto`` resolved)."""
    if name not in MATMUL_DTYPES:
        raise ConfigError(f"head.matmul_dtype: {name!r} is not one of {', '.join(MATMUL_DTYPES)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bfloat16" if major >= 8 else "float16"
    return "bfloat16" if device.type == "cpu" and _cpu_has_bf16() else "float32"


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    settings = torch.backends.cuda.matmul
    # torch >= 2.9 has fp32_precision ("ieee" | "tf32"); mixing it with allow_tf32 is refused there
    name, value = ("fp32_precision", "tf32") if hasattr(settings, "fp32_precision") else ("allow_tf32", True)
    before = getattr(settings, name)
    setattr(settings, name, value)
    try:
        yield
    finally:
        setattr(settings, name, before)


class Matmul:
    """``a @ b`` with inputs in the matmul dtype and the result in ``result_dtype`` (fp32 or fp64).

    name: a resolved ``head.matmul_dtype``; result_dtype float64 makes every product float64.
    """

    def __init__(self, name: str, result_dtype: torch.dtype, device: torch.device) -> None:
        self.name = name
        self.result_dtype = result_dtype
        exact = result_dtype == torch.float64
        self.input_dtype = torch.float64 if exact else _INPUT_DTYPES[name]
        self._tf32 = not exact and name == "tf32" and device.type == "cuda"
        self._out_dtype = device.type == "cuda"  # fp32 results straight from the 16-bit GEMM

    def cast(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` in the GEMM's input dtype (itself when it already is)."""
        return tensor.to(self.input_dtype)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a: [p, q], b: [q, r], both already ``cast`` -> [p, r] in ``result_dtype``."""
        if self.input_dtype == self.result_dtype:
            with _tf32(self._tf32):
                return a @ b
        if self._out_dtype:
            try:
                return torch.mm(a, b, out_dtype=self.result_dtype)
            except (RuntimeError, TypeError, NotImplementedError):
                self._out_dtype = False  # an older torch: widen the 16-bit result instead
        return (a @ b).to(self.result_dtype)
