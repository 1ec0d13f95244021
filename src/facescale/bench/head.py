"""Speed and memory of the classification head at large class counts, beside two baselines.

Modes (one row each, same classes, dim, batch and sample rate):

* ``sparse``       Partial FC, sparse update, fp32 centres + fp32 momentum (facescale's default);
* ``sparse-bf16``  the lean mode: bf16 centres + bf16 momentum, sparse update;
* ``offload-bf16`` the lean mode with centres and momentum in (pinned) host memory;
* ``dense``        Partial FC with arcface_torch's dense update (weight + dense grad + momentum, fp32);
* ``arcface``      the baseline: arcface_torch's PartialFC_V2 as its code does it, trained with
                   ``torch.optim.SGD`` over the whole weight (``bench/arcface_baseline.py``);
* ``full-softmax`` ``nn.Linear(D, C, bias=False)`` over every class, ``F.cross_entropy`` and
                   ``torch.optim.SGD`` (no margin, no sampling).

Host syncs per step are counted on one extra, untimed step: on CUDA with
``torch.cuda.set_sync_debug_mode``, on a CPU with a dispatch census of the ops that would
synchronise on CUDA (``bench/host_syncs.py``). A mode that runs out of memory gives an "OOM" row
and the bench goes on; a mode whose state alone would exceed the limit (default: the device's
memory) is estimated, not run.

A step is forward + backward + update for a batch of random embeddings (the backbone is left out:
this isolates the head). With ``backbone`` (e.g. "r50") a step is a whole training step instead:
random 112x112 images through the backbone (bf16 autocast on CUDA), the head on its fp32
embeddings, both backward passes and both updates, as ``train/trainer.py`` does; then
``ms_per_step`` gives samples/s and the peak is the memory beside that backbone. Time is the
median of ``steps`` timed steps after ``warmup``.

Memory. On a GPU: ``torch.cuda.max_memory_allocated`` over construction and the steps (state plus
activations; for offload the state lives in host memory and is counted separately). On a CPU:
the exact bytes of training state (tensor sizes), and the peak resident-set growth of the process
while the mode was built and run (VmHWM after resetting it through /proc/self/clear_refs, minus
the RSS before), which adds the transient buffers (logits, gradients) to the state.
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facescale.bench.arcface_baseline import ArcFaceTorchHead
from facescale.bench.host_syncs import count_host_syncs
from facescale.config import OptimConfig
from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC
from facescale.models import build_backbone
from facescale.optim_factory import build_optimizer, set_lr


@dataclass(frozen=True)
class HeadMode:
    """How a mode builds its head; ``update=None`` is a baseline (``baseline`` names which)."""

    update: str | None
    weight_dtype: str = "float32"
    momentum_dtype: str = "float32"
    offload: bool = False
    baseline: str = ""


MODES: dict[str, HeadMode] = {
    "sparse": HeadMode("sparse"),
    "sparse-bf16": HeadMode("sparse", "bfloat16", "bfloat16"),
    "offload-bf16": HeadMode("sparse", "bfloat16", "bfloat16", offload=True),
    "dense": HeadMode("dense"),
    "arcface": HeadMode(None, baseline="arcface"),
    "full-softmax": HeadMode(None, baseline="full-softmax"),
}
BASELINE = "arcface"  # the mode the ratios of the targets are taken against


@dataclass
class HeadBenchRow:
    """One (classes, mode) result. ``ms_per_step``/``peak_bytes`` are None when not run
    (``status`` "estimate": over the memory limit; "OOM": ran out of memory)."""

    classes: int
    mode: str
    state_bytes: int
    peak_bytes: int | None
    ms_per_step: float | None
    sampled: int | None = None  # classes in the sampled set of the last step
    cpu_ms_per_step: float | None = None  # process CPU time (user + system) per step, median
    host_syncs: int | None = None  # per step, counted on one extra step
    sync_ops: dict[str, int] | None = None  # which ops synced, name -> count
    status: str = "ok"  # ok | estimate | OOM

    def cost(self, use_cpu_time: bool) -> float | None:
        return self.cpu_ms_per_step if use_cpu_time else self.ms_per_step

    @property
    def estimated(self) -> bool:
        return self.ms_per_step is None

    def to_json(self) -> dict[str, object]:
        """The fields of ``facescale bench head --json`` (bytes per class from this run)."""
        return {
            "classes": self.classes,
            "mode": self.mode,
            "status": self.status,
            "state_bytes_per_class": round(self.state_bytes / self.classes, 1),
            "peak_bytes_per_class": None
            if self.peak_bytes is None
            else round(self.peak_bytes / self.classes, 1),
            "ms_per_step": None if self.ms_per_step is None else round(self.ms_per_step, 1),
            "cpu_ms_per_step": None if self.cpu_ms_per_step is None else round(self.cpu_ms_per_step, 1),
            "host_syncs_per_step": self.host_syncs,
            "sync_ops": self.sync_ops,
            "sampled_rows": self.sampled,
        }


class _FullSoftmax:
    """The baseline: every class, a linear layer, cross-entropy, torch SGD."""

    def __init__(self, num_classes: int, dim: int, device: torch.device, optim: OptimConfig) -> None:
        self.linear = nn.Linear(dim, num_classes, bias=False, device=device)
        nn.init.normal_(self.linear.weight, std=0.01)
        self.optimizer = build_optimizer(self.linear.parameters(), optim, optim.lr)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.linear(embeddings), labels)

    def step(self, lr: float) -> None:
        set_lr(self.optimizer, lr)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)

    def state_bytes(self) -> int:
        weight = self.linear.weight
        return 3 * weight.numel() * weight.element_size()


def _rss_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_mode(
    mode_name: str,
    num_classes: int,
    dim: int,
    batch: int,
    sample_rate: float,
    device: torch.device,
    steps: int = 3,
    warmup: int = 1,
    seed: int = 0,
    matmul_dtype: str = "auto",
    backbone: str | None = None,
) -> HeadBenchRow:
    """Build the head of ``mode_name`` for ``num_classes`` and time ``steps`` training steps."""
    mode = MODES[mode_name]
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        rss_tracked = _reset_peak_rss()
        base = _rss_bytes("VmRSS") or 0
    optim = OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    head: PartialFC | _FullSoftmax | ArcFaceTorchHead
    if mode.baseline == "full-softmax":
        head = _FullSoftmax(num_classes, dim, device, optim)
    elif mode.baseline == "arcface":
        head = ArcFaceTorchHead(num_classes, dim, sample_rate, device, optim, seed=seed)
    else:
        head = PartialFC(
            num_classes,
            dim,
            arcface(),
            DistContext.single(device),
            sample_rate=sample_rate,
            update=mode.update or "sparse",
            weight_dtype=mode.weight_dtype,
            momentum_dtype=mode.momentum_dtype,
            offload=mode.offload,
            optim=optim,
            seed=seed,
            matmul_dtype=matmul_dtype,
        )
    generator = torch.Generator(device=device).manual_seed(seed)
    times, cpu_times = [], []
    sampled = None
    trunk = _Trunk(backbone, dim, device, optim) if backbone else None

    def batch_data() -> tuple[torch.Tensor, torch.Tensor]:
        if trunk is not None:
            inputs = torch.randn(batch, 3, 112, 112, device=device, generator=generator)
        else:
            inputs = torch.randn(batch, dim, device=device, generator=generator).requires_grad_()
        labels = torch.randint(0, num_classes, (batch,), device=device, generator=generator)
        return inputs, labels

    def one_step(
        model: PartialFC | _FullSoftmax | ArcFaceTorchHead, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> None:
        nonlocal sampled
        features = trunk.forward(embeddings) if trunk is not None else embeddings
        loss = model(features, labels)
        if isinstance(model, PartialFC) and model.last_sample is not None:
            sampled = model.last_sample.index.numel()  # a size: no device read
        elif isinstance(model, ArcFaceTorchHead):
            sampled = model.num_sample
        loss.backward()
        if trunk is not None:
            trunk.backward_and_step(features)
        model.step(0.1)

    for i in range(warmup + steps):
        embeddings, labels = batch_data()
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        one_step(head, embeddings, labels)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    embeddings, labels = batch_data()
    syncs, sync_ops = count_host_syncs(functools.partial(one_step, head, embeddings, labels), device)
    if device.type == "cuda":
        peak: int | None = torch.cuda.max_memory_allocated(device) - base
    else:
        hwm = _rss_bytes("VmHWM")
        peak = hwm - base if (rss_tracked and hwm is not None) else None
    state = head.state_bytes()
    del head
    gc.collect()
    return HeadBenchRow(
        num_classes,
        mode_name,
        state,
        peak,
        1000.0 * statistics.median(times),
        sampled,
        1000.0 * statistics.median(cpu_times),
        syncs,
        sync_ops,
    )


class _Trunk:
    """A backbone trained in front of the head, as the trainer does: bf16 autocast on CUDA, the
    head on detached fp32 embeddings, the embedding gradient pushed through the backbone."""

    def __init__(self, name: str, dim: int, device: torch.device, optim: OptimConfig) -> None:
        self.model = build_backbone(name, embedding_size=dim).to(device).train()
        self.optimizer = build_optimizer(self.model.parameters(), optim, optim.lr)
        self.device = device
        self.embeddings: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, 112, 112] -> detached fp32 embeddings [B, D] that require grad."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            self.embeddings = self.model(images)
        return self.embeddings.detach().float().requires_grad_()

    def backward_and_step(self, features: torch.Tensor) -> None:
        assert self.embeddings is not None and features.grad is not None
        self.embeddings.backward(features.grad.to(self.embeddings.dtype))
        self.embeddings = None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def device_memory_bytes(device: torch.device) -> int:
    """The memory the head's state may take: the GPU's total memory, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def run_head_bench(
    classes: list[int],
    dim: int,
    batch: int,
    sample_rate: float,
    modes: list[str],
    device: torch.device,
    steps: int = 3,
    warmup: int = 1,
    max_state_bytes: int | None = None,
    matmul_dtype: str = "auto",
    on_row: Callable[[HeadBenchRow], None] | None = None,
    backbone: str | None = None,
) -> list[HeadBenchRow]:
    """Every (classes, mode) pair; pairs whose training state would exceed ``max_state_bytes``
    (default: ``device_memory_bytes``) are estimated only (state bytes scaled from the warm-up
    head's own count, no timing); a pair that runs out of memory gives an "OOM" row and the rest still run.
    ``on_row`` sees each row as soon as it is measured."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise FacescaleError(f"unknown head bench mode(s) {unknown}; known: {', '.join(MODES)}")
    limit = device_memory_bytes(device) if max_state_bytes is None else max_state_bytes
    warm: dict[str, HeadBenchRow] = {}
    for name in modes:  # untimed and small: one-time costs (thread pools, kernels) stay out of the rows
        warm[name] = bench_mode(
            name,
            min(1000, *classes),
            dim,
            min(batch, 8),
            sample_rate,
            device,
            1,
            0,
            matmul_dtype=matmul_dtype,
        )
        gc.collect()
    rows = []
    for num_classes in classes:
        for name in modes:
            # Training state is the same per class at any count: scale what the head itself counted.
            predicted = warm[name].state_bytes * num_classes // warm[name].classes
            if predicted > limit:
                row = HeadBenchRow(num_classes, name, predicted, None, None, status="estimate")
            else:
                try:
                    row = bench_mode(
                        name,
                        num_classes,
                        dim,
                        batch,
                        sample_rate,
                        device,
                        steps,
                        warmup,
                        matmul_dtype=matmul_dtype,
                        backbone=backbone,
                    )
                except Exception as error:  # only out-of-memory becomes a row; the rest re-raise
                    if not _is_oom(error):
                        raise
                    row = HeadBenchRow(num_classes, name, predicted, None, None, status="OOM")
                    del error
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


def format_table(rows: list[HeadBenchRow], peak_label: str, use_cpu_time: bool = False) -> str:
    """Side-by-side table; ratios are against the ``arcface`` baseline of the same class count.

    use_cpu_time: time ratios from process CPU time instead of wall-clock time (a CPU run on a
    shared machine, where waiting for a core inflates the wall clock).
    """
    header = [
        "classes",
        "mode",
        "rows/step",
        "state B/class",
        "peak B/class",
        peak_label,
        "ms/step",
        "cpu ms/step",
        "syncs/step",
        "time vs arcface",
        "peak vs arcface",
        "state vs arcface",
    ]
    by_key = {(r.classes, r.mode): r for r in rows}
    table = [header]
    for r in rows:
        base = by_key.get((r.classes, BASELINE))

        def ratio(ours: float | None, theirs: float | None) -> str:
            return f"{ours / theirs:.2f}x" if ours is not None and theirs else "-"

        table.append(
            [
                f"{r.classes:,}",
                r.mode + ("" if r.status == "ok" else f" ({r.status})"),
                "-" if r.estimated else f"{r.sampled if r.sampled is not None else r.classes:,}",
                f"{r.state_bytes / r.classes:.0f}",
                "-" if r.peak_bytes is None else f"{r.peak_bytes / r.classes:.0f}",
                _size(r.peak_bytes),
                "-" if r.ms_per_step is None else f"{r.ms_per_step:.1f}",
                "-" if r.cpu_ms_per_step is None else f"{r.cpu_ms_per_step:.1f}",
                "-" if r.host_syncs is None else str(r.host_syncs),
                ratio(r.cost(use_cpu_time), base.cost(use_cpu_time) if base else None),
                ratio(r.peak_bytes, base.peak_bytes if base else None),
                ratio(r.state_bytes, base.state_bytes if base else None),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i != 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
