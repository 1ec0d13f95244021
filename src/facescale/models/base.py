"""What every face backbone shares: the registry, the body/embedding split and its options.

A face backbone is a *body* (convolutions or transformer blocks, the bulk of the cost) followed
by an *embedding layer* (flatten -> linear -> batch norm). Mixed precision is applied to the
body only: the embedding layer always runs in the dtype of its own weights (fp32 unless the
whole module was cast), because the embedding is what the margin loss and the verification
threshold see, and fp16 rounding there costs accuracy (insightface arcface_torch does the same
with its ``fp16`` flag).

Options shared by all families:

- ``amp_body``: ``"fp16"`` / ``"bf16"`` runs the body under autocast even when the caller
  did not ask for it; ``None`` leaves precision to the caller (an outer ``torch.autocast``
  still covers the body, never the embedding layer).
- ``grad_checkpoint``: recompute each block in backward instead of storing its activations
  (training only). Batch-norm running statistics are restored after the recomputation so a
  checkpointed block updates them exactly once per step, as without checkpointing.
- ``channels_last``: NHWC weights and inputs, the fast layout for convolutions on tensor cores.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from facescale.errors import ConfigError
from facescale.registry import Registry

BACKBONES: Registry[Any] = Registry("backbone")

AMP_DTYPES = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def amp_dtype(name: str | None) -> torch.dtype | None:
    """``"fp16"``/``"bf16"`` (or the long names) -> the torch dtype; None -> None."""
    if name is None:
        return None
    try:
        return AMP_DTYPES[name]
    except KeyError:
        raise ConfigError(
            f"amp_body {name!r} is not one of {', '.join(sorted(AMP_DTYPES))} (or None for fp32)"
        ) from None


def autocast_or_nothing(device_type: str, dtype: torch.dtype | None, enabled: bool = True) -> Any:
    """``torch.autocast`` where the device supports it (not on ``meta``), else a no-op context.

    With ``dtype=None`` and ``enabled=False`` it switches off an autocast opened by a caller.
    """
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    if dtype is None and enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, enabled=enabled)


@contextlib.contextmanager
def _frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Undo any running-statistics update made inside the block (the checkpoint recompute)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        [b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        for m in norms
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                live = [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
                for dst, src in zip(live, buffers):
                    dst.copy_(src)


def _checkpoint_contexts(block: nn.Module) -> tuple[Any, Any]:
    """(context for the forward, context for the recomputation in backward)."""
    return contextlib.nullcontext(), _frozen_batchnorm_stats(block)


def run_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    """Apply ``blocks`` in order; with ``use_checkpoint`` each one is recomputed in backward."""
    for block in blocks:
        if use_checkpoint:
            if torch.compiler.is_compiling():
                # Dynamo traces checkpoints itself and rejects custom recompute contexts.
                x = checkpoint(block, x, use_reentrant=False)
            else:
                contexts = functools.partial(_checkpoint_contexts, block)
                x = checkpoint(block, x, use_reentrant=False, context_fn=contexts)
        else:
            x = block(x)
    return x


class FaceBackbone(nn.Module, abc.ABC):
    """Base class: ``forward(x [B, 3, 112, 112]) -> embeddings [B, embedding_size]`` (not normalised).

    Subclasses implement ``forward_body`` (image -> features, may run in reduced precision) and
    ``forward_embedding`` (features -> embedding, always run with autocast off).
    """

    embedding_size: int

    def __init__(self, amp_body: str | None = None, grad_checkpoint: bool = False) -> None:
        super().__init__()
        self.amp_dtype = amp_dtype(amp_body)
        self.grad_checkpoint = grad_checkpoint
        self.channels_last = False

    def use_channels_last(self, enabled: bool = True) -> FaceBackbone:
        """Store the weights NHWC and convert inputs on the way in; returns self."""
        self.channels_last = enabled
        if enabled:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self

    def checkpointing(self) -> bool:
        """Whether blocks are recomputed in backward right now (only while training with grads)."""
        return self.grad_checkpoint and self.training and torch.is_grad_enabled()

    @abc.abstractmethod
    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk: images ``[B, 3, 112, 112]`` -> features (runs under the body's autocast)."""

    @abc.abstractmethod
    def forward_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """The embedding layers: features -> ``[B, embedding_size]`` (always outside autocast)."""

    @abc.abstractmethod
    def embedding_dtype(self) -> torch.dtype:
        """The dtype of the embedding layer's weights; its input is cast to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float ``[B, 3, 112, 112]`` in [-1, 1] -> ``[B, embedding_size]`` in the weights' dtype."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_or_nothing(x.device.type, self.amp_dtype):
            features = self.forward_body(x)
        with autocast_or_nothing(x.device.type, None, enabled=False):
            return self.forward_embedding(features.to(self.embedding_dtype()))


def check_positive(name: str, value: float, minimum: float = 0.0, maximum: float | None = None) -> None:
    """ConfigError naming the option when ``value`` is outside [minimum, maximum)."""
    if value < minimum or (maximum is not None and value >= maximum):
        upper = f", {maximum})" if maximum is not None else ", inf)"
        raise ConfigError(f"backbone option {name}={value!r} must be in [{minimum}{upper}")
