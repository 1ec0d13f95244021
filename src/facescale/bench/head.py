"""Speed and memory of the classification head at large class counts, beside two baselines.

Modes (one row each, same classes, dim, batch and sample rate):

* ``sparse``       Partial FC, sparse update, fp32 centres + fp32 momentum (facescale's default);
* ``sparse-bf16``  the lean mode: bf16 centres + bf16 momentum, sparse update;
* ``offload-bf16`` the lean mode with centres and momentum in (pinned) host memory;
* ``dense``        Partial FC with arcface_torch's dense update (weight + dense grad + momentum, fp32);
* ``full-softmax`` the plain baseline: ``nn.Linear(D, C, bias=False)`` over every class,
                   ``F.cross_entropy`` and ``torch.optim.SGD`` (no margin, no sampling).

A step is forward + backward + update for a batch of random embeddings (the backbone is left out:
this isolates the head). Time is the median of ``steps`` timed steps after ``warmup``.

Memory. On a GPU: ``torch.cuda.max_memory_allocated`` over construction and the steps (state plus
activations; for offload the state lives in host memory and is counted separately). On a CPU:
the exact bytes of training state (tensor sizes), and the peak resident-set growth of the process
while the mode was built and run (VmHWM after resetting it through /proc/self/clear_refs, minus
the RSS before), which adds the transient buffers (logits, gradients) to the state.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facescale.config import OptimConfig
from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC
from facescale.optim_factory import build_optimizer, set_lr


@dataclass(frozen=True)
class HeadMode:
    """How a mode builds its head; ``update=None`` is the full-softmax baseline."""

    update: str | None
    weight_dtype: str = "float32"
    momentum_dtype: str = "float32"
    offload: bool = False

    def state_bytes_per_class(self, dim: int) -> int:
        """Training-state bytes per class: centres + momentum (+ the dense gradient of dense/full)."""
        size = {"float32": 4, "bfloat16": 2, "float16": 2}
        if self.update in (None, "dense"):
            return 3 * size[self.weight_dtype] * dim
        return (size[self.weight_dtype] + size[self.momentum_dtype]) * dim


MODES: dict[str, HeadMode] = {
    "sparse": HeadMode("sparse"),
    "sparse-bf16": HeadMode("sparse", "bfloat16", "bfloat16"),
    "offload-bf16": HeadMode("sparse", "bfloat16", "bfloat16", offload=True),
    "dense": HeadMode("dense"),
    "full-softmax": HeadMode(None),
}


@dataclass
class HeadBenchRow:
    """One (classes, mode) result. ``ms_per_step``/``peak_bytes`` are None when only estimated."""

    classes: int
    mode: str
    state_bytes: int
    peak_bytes: int | None
    ms_per_step: float | None
    sampled: int | None = None  # classes in the sampled set of the last step
    cpu_ms_per_step: float | None = None  # process CPU time (user + system) per step, median

    def cost(self, use_cpu_time: bool) -> float | None:
        return self.cpu_ms_per_step if use_cpu_time else self.ms_per_step

    @property
    def estimated(self) -> bool:
        return self.ms_per_step is None


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
    head: PartialFC | _FullSoftmax
    if mode.update is None:
        head = _FullSoftmax(num_classes, dim, device, optim)
    else:
        head = PartialFC(
            num_classes,
            dim,
            arcface(),
            DistContext.single(device),
            sample_rate=sample_rate,
            update=mode.update,
            weight_dtype=mode.weight_dtype,
            momentum_dtype=mode.momentum_dtype,
            offload=mode.offload,
            optim=optim,
            seed=seed,
        )
    generator = torch.Generator(device=device).manual_seed(seed)
    times, cpu_times = [], []
    sampled = None
    for i in range(warmup + steps):
        embeddings = torch.randn(batch, dim, device=device, generator=generator).requires_grad_()
        labels = torch.randint(0, num_classes, (batch,), device=device, generator=generator)
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = head(embeddings, labels)
        if isinstance(head, PartialFC) and head.last_sample is not None:
            sampled = int(head.last_sample.index.numel())
        loss.backward()
        head.step(0.1)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
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
    )


def run_head_bench(
    classes: list[int],
    dim: int,
    batch: int,
    sample_rate: float,
    modes: list[str],
    device: torch.device,
    steps: int = 3,
    warmup: int = 1,
    max_state_bytes: int = 8 << 30,
) -> list[HeadBenchRow]:
    """Every (classes, mode) pair; pairs whose training state would exceed ``max_state_bytes``
    are estimated only (state bytes from the per-class formula, no timing)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise FacescaleError(f"unknown head bench mode(s) {unknown}; known: {', '.join(MODES)}")
    rows = []
    for num_classes in classes:
        for name in modes:
            predicted = MODES[name].state_bytes_per_class(dim) * num_classes
            if predicted > max_state_bytes:
                rows.append(HeadBenchRow(num_classes, name, predicted, None, None))
                continue
            rows.append(bench_mode(name, num_classes, dim, batch, sample_rate, device, steps, warmup))
    return rows


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


def format_table(rows: list[HeadBenchRow], peak_label: str, use_cpu_time: bool = False) -> str:
    """Side-by-side table; ratios are against ``dense`` and ``full-softmax`` of the same class count.

    use_cpu_time: time ratios from process CPU time instead of wall-clock time (a CPU run on a
    shared machine, where waiting for a core inflates the wall clock).
    """
    header = [
        "classes",
        "mode",
        "rows/step",
        "state B/class",
        "state",
        peak_label,
        "ms/step",
        "cpu ms/step",
        "time vs dense",
        "time vs full",
        "state vs dense",
        "state vs full",
    ]
    by_key = {(r.classes, r.mode): r for r in rows}
    table = [header]
    for r in rows:
        dense, full = by_key.get((r.classes, "dense")), by_key.get((r.classes, "full-softmax"))

        def ratio(ours: float | None, theirs: float | None) -> str:
            return f"{ours / theirs:.2f}x" if ours is not None and theirs else "-"

        table.append(
            [
                f"{r.classes:,}",
                r.mode + (" (estimate)" if r.estimated else ""),
                "-" if r.estimated else f"{r.sampled if r.sampled is not None else r.classes:,}",
                f"{r.state_bytes / r.classes:.0f}",
                _size(r.state_bytes),
                _size(r.peak_bytes),
                "-" if r.ms_per_step is None else f"{r.ms_per_step:.1f}",
                "-" if r.cpu_ms_per_step is None else f"{r.cpu_ms_per_step:.1f}",
                ratio(r.cost(use_cpu_time), dense.cost(use_cpu_time) if dense else None),
                ratio(r.cost(use_cpu_time), full.cost(use_cpu_time) if full else None),
                ratio(r.state_bytes, dense.state_bytes if dense else None),
                ratio(r.state_bytes, full.state_bytes if full else None),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i != 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
