"""Count the operations that would make the host wait for a CUDA device, on any device.

On CUDA, ``torch.cuda.set_sync_debug_mode`` reports synchronising calls directly. On a CPU run
nothing waits, so this census watches the ATen ops dispatched and counts those whose CUDA kernel
must copy a result to the host before it can return: reading a value (``.item()``, ``bool(t)``,
``int(t)``: ``_local_scalar_dense``), data-dependent output shapes (``nonzero``, ``unique``,
``masked_select``, boolean-mask indexing and assignment, ``repeat_interleave`` without
``output_size``), ``equal``, and copies from a device to the host.

It cannot see what never reaches the dispatcher: ``.tolist()`` and ``.numpy()`` of a CPU tensor
read its memory directly (on CUDA they copy to the host first, a sync), so code under census
must not use them in the step (``PartialFC`` does not).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_ALWAYS = {
    "aten._local_scalar_dense",
    "aten.nonzero",
    "aten.masked_select",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.unique_dim_consecutive",
    "aten.equal",
    "aten.is_nonzero",
}


def _is_bool_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.bool


def _would_sync(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if name in _ALWAYS:
        return True
    if name in ("aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
        return any(_is_bool_tensor(i) for i in indices if i is not None)
    if name == "aten.repeat_interleave":
        return kwargs.get("output_size") is None and (len(args) < 4 or args[3] is None)
    if name in ("aten._to_copy", "aten.copy_"):
        # a copy that lands in host memory from a device (counted on a CUDA run only: on a CPU run
        # every tensor is in host memory)
        source = args[1] if name == "aten.copy_" else args[0]
        target_device = kwargs.get("device") if name == "aten._to_copy" else args[0].device
        return (
            isinstance(source, torch.Tensor)
            and source.device.type != "cpu"
            and target_device is not None
            and torch.device(target_device).type == "cpu"
        )
    return False


class HostSyncCensus(TorchDispatchMode):
    """``with HostSyncCensus() as census: ...``; then ``census.count`` and ``census.ops`` (name -> count)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        name = f"aten.{func._schema.name.split('::')[-1]}"
        if _would_sync(name, args, kwargs):
            self.ops[name] += 1
        return func(*args, **kwargs)


def count_host_syncs(fn: Callable[[], object], device: torch.device) -> tuple[int, dict[str, int]]:
    """Run ``fn`` once and count its host syncs: on CUDA as ``torch.cuda.set_sync_debug_mode``
    reports them, elsewhere with ``HostSyncCensus``. Returns (count, what -> count)."""
    if device.type != "cuda":
        with HostSyncCensus() as census:
            fn()
        return census.count, dict(census.ops)
    torch.cuda.synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    found = [str(w.message).split("\n")[0][:80] for w in caught if "synchroniz" in str(w.message)]
    return len(found), dict(Counter(found))
