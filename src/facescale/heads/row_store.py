"""Where the class centres and their optimizer state live, and how sampled rows move.

A row store holds named tensors whose first dimension is this rank's classes ([n, D] centres and
momentum, [n] AdamW step counts). Each training step reads the sampled rows (``fetch``) and writes
the updated ones back (``commit``); rows never sampled are never touched.

``DeviceRowStore`` keeps everything on the compute device. ``HostRowStore`` keeps everything in
host memory (pinned when the device is a GPU) so the number of classes is bounded by host RAM, not
GPU memory: only the sampled rows cross the bus. On a GPU the copies run on a side stream: the
host-side gather of the optimizer state overlaps the forward/backward kernels, and the write-back
of step t overlaps the backbone of step t + 1 (it is completed by ``flush`` before the rows are
read again). On a CPU device both stores are plain indexing.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class DeviceRowStore:
    """Named [n, ...] tensors on one device; rows are read with index_select and written with index_copy_."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        self.device = device
        self.tensors = {name: t.to(device) for name, t in tensors.items()}

    def nbytes(self) -> int:
        """Bytes held by all tensors (the training state of this rank's classes)."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def fetch(self, index: torch.Tensor | None, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Copies of the rows ``index`` (int64 [k]; None = all rows) of each named tensor, on the device."""
        out = {}
        for name in names:
            source = self.tensors[name]
            out[name] = source.clone() if index is None else source.index_select(0, index.to(source.device))
        return out

    def commit(self, index: torch.Tensor | None, rows: dict[str, torch.Tensor]) -> None:
        """Write ``rows[name]`` ([k, ...], cast to the stored dtype) back to rows ``index``."""
        for name, values in rows.items():
            target = self.tensors[name]
            if index is None:
                target.copy_(values)
            else:
                target.index_copy_(0, index.to(target.device), values.to(target.dtype))

    def flush(self) -> None:
        """Finish pending writes (none here)."""

    def replace(self, name: str, tensor: torch.Tensor) -> None:
        """Overwrite a whole tensor in place (loading a checkpoint); keeps dtype, device and pinning."""
        self.flush()
        self.tensors[name].copy_(tensor)


class HostRowStore(DeviceRowStore):
    """Named tensors in host memory (pinned for a GPU); sampled rows are copied to ``device`` per step."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        self.device = device
        self.async_copies = device.type == "cuda"
        self.tensors = {}
        for name, t in tensors.items():
            if self.async_copies:  # pinned memory lets the copies run asynchronously
                host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                self.tensors[name] = host.copy_(t)
            else:
                self.tensors[name] = t.cpu()
        self._copy_stream = torch.cuda.Stream(device) if self.async_copies else None
        self._pending: list[tuple[torch.Tensor | None, dict[str, torch.Tensor], torch.cuda.Event]] = []

    def fetch(self, index: torch.Tensor | None, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Device copies of the rows ``index`` (a CPU or device int64 [k]; None = all rows).

        On a GPU the returned tensors are ready for the current stream: it waits for the copy.
        """
        self.flush()  # rows written back by the previous step must be in host memory first
        host_index = None if index is None else index.to("cpu")
        if not self.async_copies:
            return super().fetch(host_index, names)
        assert self._copy_stream is not None
        compute = torch.cuda.current_stream(self.device)
        out = {}
        for name in names:
            source = self.tensors[name]
            if host_index is None:
                staged = source
            else:
                staged = torch.empty(
                    (host_index.numel(), *source.shape[1:]), dtype=source.dtype, pin_memory=True
                )
                torch.index_select(source, 0, host_index, out=staged)
            with torch.cuda.stream(self._copy_stream):
                rows = staged.to(self.device, non_blocking=True)
            rows.record_stream(compute)  # allocated on the copy stream, used on the compute stream
            out[name] = rows
        compute.wait_stream(self._copy_stream)
        return out

    def commit(self, index: torch.Tensor | None, rows: dict[str, torch.Tensor]) -> None:
        """Start copying the updated rows to host memory; ``flush`` scatters them into place."""
        host_index = None if index is None else index.to("cpu")
        if not self.async_copies:
            super().commit(host_index, rows)
            return
        assert self._copy_stream is not None
        compute = torch.cuda.current_stream(self.device)
        self._copy_stream.wait_stream(compute)  # the update kernels must have finished
        staged = {}
        with torch.cuda.stream(self._copy_stream):
            for name, values in rows.items():
                values.record_stream(self._copy_stream)  # made on the compute stream, read here
                converted = values.to(self.tensors[name].dtype)
                buffer = torch.empty(converted.shape, dtype=converted.dtype, pin_memory=True)
                buffer.copy_(converted, non_blocking=True)
                staged[name] = buffer
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        self._pending.append((host_index, staged, done))

    def flush(self) -> None:
        """Wait for the pending device->host copies and scatter the rows into the host tensors."""
        while self._pending:
            host_index, staged, done = self._pending.pop(0)
            done.synchronize()
            for name, values in staged.items():
                if host_index is None:
                    self.tensors[name].copy_(values)
                else:
                    self.tensors[name].index_copy_(0, host_index, values)
