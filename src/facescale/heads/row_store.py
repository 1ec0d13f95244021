"""Where the class centres and their optimizer state live, and how sampled rows move.

A row store holds named tensors whose first dimension is this rank's classes ([n, D] centres and
momentum, [n] AdamW step counts). Each training step reads the sampled rows (``fetch``) and writes
the updated ones back (``commit``); rows never sampled are never touched.

``DeviceRowStore`` keeps everything on the compute device. ``HostRowStore`` keeps everything in
host memory (pinned when the device is a GPU) so the number of classes is bounded by host RAM, not
GPU memory: only the sampled rows cross the bus. On a GPU the copies run on a side stream and the
host-side gathers and scatters on a worker thread: the optimizer state of step t is gathered and
copied while its forward/backward kernels run (the compute stream waits for it only in ``step``),
and the write-back of step t overlaps the backbone of step t + 1 (``flush`` completes it before
the rows are read again). On a CPU device both stores are plain indexing.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

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
    """Named tensors in host memory (pinned for a GPU); sampled rows are copied to ``device`` per step.

    On a GPU, host-side work runs on one worker thread, in order: gathering the sampled rows
    into pinned staging buffers and starting their copy to the device (``prefetch``), and
    scattering the updated rows that came back (``commit``). The training thread only waits where
    it needs the data: the weight rows before the forward, the optimizer state in ``step``
    (``collect``), and pending write-backs before rows are read again (``flush``).
    """

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
        self._worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="facescale-rows")
            if self.async_copies
            else None
        )
        self._jobs: list[Future[None]] = []  # write-backs not yet scattered into host memory
        self._prefetched: Future[tuple[dict[str, torch.Tensor], torch.cuda.Event]] | None = None
        self._cpu_prefetched: dict[str, torch.Tensor] = {}

    def _copy_to_device(
        self, host_index: torch.Tensor | None, names: list[str]
    ) -> tuple[dict[str, torch.Tensor], torch.cuda.Event]:
        """Gather rows into pinned buffers, start their copy on the copy stream (any thread)."""
        assert self._copy_stream is not None
        torch.cuda.set_device(self.device)
        out = {}
        with torch.cuda.stream(self._copy_stream):
            for name in names:
                source = self.tensors[name]
                if host_index is None:
                    staged = source
                else:
                    staged = torch.empty(
                        (host_index.numel(), *source.shape[1:]), dtype=source.dtype, pin_memory=True
                    )
                    torch.index_select(source, 0, host_index, out=staged)
                out[name] = staged.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        return out, ready

    def _hand_over(self, rows: dict[str, torch.Tensor], ready: torch.cuda.Event) -> dict[str, torch.Tensor]:
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(ready)
        for values in rows.values():
            values.record_stream(compute)  # allocated on the copy stream, used on the compute stream
        return rows

    def fetch(self, index: torch.Tensor | None, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Device copies of the rows ``index`` (a CPU or device int64 [k]; None = all rows).

        On a GPU the returned tensors are ready for the current stream: it waits for the copy.
        """
        self.flush()  # rows written back by the previous step must be in host memory first
        host_index = None if index is None else index.to("cpu")
        if not self.async_copies:
            return super().fetch(host_index, names)
        return self._hand_over(*self._copy_to_device(host_index, list(names)))

    def prefetch(self, index: torch.Tensor | None, names: Iterable[str]) -> None:
        """Start fetching rows without waiting (GPU: on the worker thread); ``collect`` returns them."""
        host_index = None if index is None else index.to("cpu")
        names = list(names)
        if self._worker is None:
            self._cpu_prefetched = super().fetch(host_index, names)
            return
        self.flush()
        self._prefetched = self._worker.submit(self._copy_to_device, host_index, names)

    def collect(self) -> dict[str, torch.Tensor]:
        """The rows of the last ``prefetch``, ready for the current stream."""
        if self._worker is None:
            rows, self._cpu_prefetched = self._cpu_prefetched, {}
            return rows
        assert self._prefetched is not None, "collect() without prefetch()"
        job, self._prefetched = self._prefetched, None
        return self._hand_over(*job.result())

    def commit(self, index: torch.Tensor | None, rows: dict[str, torch.Tensor]) -> None:
        """Start copying the updated rows to host memory; the worker scatters them into place."""
        host_index = None if index is None else index.to("cpu")
        if self._worker is None:
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
        self._jobs.append(self._worker.submit(self._scatter, host_index, staged, done))

    def _scatter(
        self, host_index: torch.Tensor | None, staged: dict[str, torch.Tensor], done: torch.cuda.Event
    ) -> None:
        done.synchronize()  # on the worker thread: the training thread does not wait for the copy
        for name, values in staged.items():
            if host_index is None:
                self.tensors[name].copy_(values)
            else:
                self.tensors[name].index_copy_(0, host_index, values)

    def flush(self) -> None:
        """Wait until every pending write-back is scattered into the host tensors."""
        while self._jobs:
            self._jobs.pop(0).result()
