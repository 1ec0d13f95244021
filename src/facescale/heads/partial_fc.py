"""Partial FC: class centres sharded over ranks, a sampled subset per step, a sparse update.

Per step, on every rank (B = global batch, b = B / world_size, n = this rank's classes):

1. the ranks exchange batch sizes, then all-gather labels [B] and check them (a bad label raises
   on every rank, naming the label and the rank it came from);
2. ``sample_classes`` picks k rows: every positive of the global batch held here plus uniform
   negatives up to int(sample_rate * n); labels are remapped into those k rows;
3. embeddings are all-gathered with a differentiable gather (each rank's slice of the gradient
   returns to it, summed over ranks);
4. cosine [B, k] = normalize(embeddings) @ normalize(centres[index]).T with fp32 results (fp64
   when the centres are fp64; GEMM inputs in ``head.matmul_dtype``), margin on the target
   column, sharded softmax cross-entropy: the loss is the mean over the global batch, the same
   on every rank;
5. ``step(lr)`` after backward. Sparse mode (default): the rows are read from the store block by
   block and never copied whole; the centres' gradient, the update (SGD momentum + weight decay,
   or AdamW), the stochastic rounding and the write-back run per block inside ``step`` (see
   ``fused_rows``), touching the sampled rows only; other rows stay bit-identical. Dense mode is
   arcface_torch's: the whole [n, D] shard is a parameter with a dense gradient and torch's
   optimizer decays and moves every row each step.

Host syncs: none in a sparse step on one process at any practical sample rate, except reading
one flag: the labels are checked on the device and the verdict is read at the next forward (or
``check_inputs``, or a save), when it is long computed; a step with bad labels updates nothing.
With several processes the batch shapes are exchanged each step (one more sync).

Training-state bytes per class (D = 512): dense fp32 SGD 6144 (weight + grad + momentum);
sparse fp32 SGD 4096; sparse bf16 weight + bf16 momentum 2048 (bf16 rows are written back with
stochastic rounding, so small updates are not lost to bf16's 8-bit precision). ``offload=True``
keeps all of it in host memory and moves only the sampled rows to the device (see ``row_store``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from facescale.config import CHOICES, Config, OptimConfig
from facescale.distributed.class_range import class_range
from facescale.distributed.collectives import all_gather_with_grad, sharded_cross_entropy
from facescale.distributed.context import DistContext
from facescale.errors import ConfigError, FacescaleError
from facescale.heads.batch_checks import check_batch_shapes, check_labels
from facescale.heads.centres import dtype_name, init_centres, parse_dtype
from facescale.heads.fused_rows import CosineGrad, SampledRows, centre_grad, sampled_cosine, update_rows
from facescale.heads.margins import MarginFn, build_margin
from facescale.heads.matmul import Matmul, resolve_matmul_dtype
from facescale.heads.row_store import DeviceRowStore, HostRowStore
from facescale.heads.sampling import ClassSample, mixed_seed, num_sampled, sample_classes, sampling_seed
from facescale.heads.shard_io import read_rows, remove_other_world_sizes, write_shard
from facescale.heads.sparse_optim import RoundingNoise, build_sparse_optimizer
from facescale.optim_factory import build_optimizer, set_lr


@dataclass
class _Pending:
    """What a forward pass leaves for ``step``: the sample and the leaf rows that got the gradient."""

    sample: ClassSample
    valid: torch.Tensor  # 0-dim bool on the device: every label of the global batch is in range
    rows: SampledRows | None  # sparse: where the sampled rows are read from; dense: None
    kept: CosineGrad | None  # sparse: what backward leaves for the update
    offloaded: bool  # the optimizer-state rows are being prefetched from host memory


class PartialFC:
    """Class-sharded margin-softmax head: ``loss = head(embeddings, labels)``, backward, ``head.step(lr)``.

    num_classes: all classes of the dataset (split over ctx.world_size ranks);
    margin: callable (cosine [B, k], labels [B]) -> logits [B, k] (see heads.margins);
    sample_rate: in [0, 1]; update: "sparse" | "dense"; weight_dtype / momentum_dtype: "float32",
    "bfloat16", "float16" (or "float64"); offload: keep centres and state in host memory;
    optim: name (sgd | adamw), momentum, betas, weight_decay (lr comes with each ``step``);
    seed: initialisation and sampling; matmul_dtype: the GEMMs' input dtype (see heads.matmul).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: MarginFn,
        ctx: DistContext,
        sample_rate: float = 1.0,
        update: str = "sparse",
        weight_dtype: str | torch.dtype = "float32",
        momentum_dtype: str | torch.dtype = "float32",
        offload: bool = False,
        optim: OptimConfig | None = None,
        seed: int = 0,
        matmul_dtype: str = "auto",
    ) -> None:
        optim = optim or OptimConfig()
        self.weight_dtype = parse_dtype(weight_dtype, "head.weight_dtype")
        self.momentum_dtype = parse_dtype(momentum_dtype, "head.momentum_dtype")
        if update not in CHOICES["head.update"]:
            raise ConfigError(f"head.update: {update!r} is not one of {', '.join(CHOICES['head.update'])}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(f"head.sample_rate: {sample_rate} must be in [0, 1]")
        if update == "dense" and offload:
            raise ConfigError("head.offload needs head.update=sparse (a dense update touches every row)")
        if update == "dense" and self.momentum_dtype != self.weight_dtype:
            raise ConfigError(
                f"head.update=dense keeps optimizer state in the weight dtype (torch.optim): "
                f"head.momentum_dtype {dtype_name(self.momentum_dtype)} != "
                f"head.weight_dtype {dtype_name(self.weight_dtype)}"
            )
        if embedding_size <= 0:
            raise ConfigError(f"embedding size must be > 0, got {embedding_size}")
        ctx.agree(
            "the head's settings",
            {"num_classes": num_classes, "embedding_size": embedding_size, "update": update,
             "sample_rate": sample_rate, "optimizer": optim.name},
        )  # fmt: skip
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.margin = margin
        self.ctx = ctx
        self.sample_rate = sample_rate
        self.update = update
        self.offload = offload
        self.optim_name = optim.name
        self.seed = seed
        self.classes = class_range(num_classes, ctx.world_size, ctx.rank)
        if offload and num_sampled(sample_rate, len(self.classes)) >= len(self.classes):
            raise ConfigError(
                f"head.offload with head.sample_rate={sample_rate} would copy the whole shard to the "
                "device and back every step; offload is for sampled heads (sample_rate < 1)"
            )
        self.compute_dtype = torch.float64 if self.weight_dtype == torch.float64 else torch.float32
        self.matmul_dtype = resolve_matmul_dtype(matmul_dtype, ctx.device)
        self.matmul = Matmul(self.matmul_dtype, self.compute_dtype, ctx.device)
        self.step_count = 0
        self._pending: _Pending | None = None
        self._unchecked: tuple[torch.Tensor, torch.Tensor, int] | None = None  # labels not yet verified

        home = torch.device("cpu") if offload else ctx.device
        centres = init_centres(self.classes, embedding_size, seed, self.weight_dtype, home)
        if update == "sparse":
            self.optimizer = build_sparse_optimizer(optim)
            tensors = {"weight": centres}
            for spec in self.optimizer.state_specs(embedding_size):
                dtype = self.momentum_dtype if spec.kind == "moment" else torch.int32
                shape = (len(self.classes), *spec.per_class_shape)
                tensors[spec.name] = torch.zeros(shape, dtype=dtype, device=home)
            store_type = HostRowStore if offload else DeviceRowStore
            self.store = store_type(tensors, ctx.device)
            lean = torch.bfloat16 in (self.weight_dtype, self.momentum_dtype)
            self.noise = RoundingNoise(mixed_seed(seed, 3, ctx.rank), ctx.device) if lean else None
        else:
            self.weight = centres.requires_grad_()
            # optim.lr only starts it: every step() sets the rate the schedule gives.
            self.dense_optimizer = build_optimizer([self.weight], optim, optim.lr)

    # -- properties ---------------------------------------------------------------------------

    @property
    def num_local(self) -> int:
        """Classes held by this rank."""
        return len(self.classes)

    @property
    def last_sample(self) -> ClassSample | None:
        """The sample of the latest forward pass (until ``step``)."""
        return self._pending.sample if self._pending else None

    def last_centre_grad(self) -> torch.Tensor | None:
        """Gradient of the loss w.r.t. the sampled centres [k, D] (rows of ``last_sample.index``), after
        backward; None before. For tests and diagnostics."""
        pending = self._pending
        if pending is None:
            return None
        if pending.kept is not None:
            if pending.kept.grad is None or pending.rows is None:
                return None
            return centre_grad(pending.kept, pending.rows, self.matmul)
        grad = self.weight.grad
        if grad is None or pending.sample.full:
            return grad
        return grad.index_select(0, pending.sample.index)

    def state_bytes(self) -> int:
        """Bytes of training state on this rank: centres + optimizer state (+ the dense gradient)."""
        if self.update == "sparse":
            return self.store.nbytes()
        return 2 * self.weight.numel() * self.weight.element_size() + sum(
            t.numel() * t.element_size()
            for state in self.dense_optimizer.state.values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        )

    # -- forward -----------------------------------------------------------------------------

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.forward(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """embeddings: [b, D] this rank's batch (any float dtype); labels: int [b] in [0, num_classes).

        Returns the scalar mean margin-softmax loss over the global batch (equal on all ranks).
        A label outside [0, num_classes) raises at the next forward, ``check_inputs`` or save
        (naming it); the step it came with updates nothing.
        """
        ctx, device = self.ctx, self.ctx.device
        self.check_inputs()
        local_batch = check_batch_shapes(ctx, embeddings, labels, self.embedding_size)
        global_labels = ctx.all_gather(labels.reshape(-1).to(device=device, dtype=torch.int64))
        valid = ((global_labels >= 0) & (global_labels < self.num_classes)).all()
        self._unchecked = (valid, global_labels, local_batch)

        key = sampling_seed(self.seed, self.step_count, ctx.rank)
        sample = sample_classes(global_labels, self.classes, self.sample_rate, key)
        index = None if sample.full else sample.index

        rows: SampledRows | None = None
        kept: CosineGrad | None = None
        with torch.autocast(device_type=device.type, enabled=False):
            gathered = all_gather_with_grad(embeddings, ctx).to(self.compute_dtype)
            if self.update == "sparse":
                if self.offload:  # the sampled rows come to the device once; blocks are views of them
                    rows = SampledRows.gather(self.store.fetch(index, ["weight"]), None)
                else:  # gathered once in the stored dtype: forward, backward and step read them
                    rows = SampledRows.gather(self.store.tensors, index)
                kept = CosineGrad()
                cosine = sampled_cosine(F.normalize(gathered, dim=1), rows, self.matmul, kept)
            else:
                centres = self.weight if index is None else self.weight.index_select(0, index)
                centres = centres.to(self.compute_dtype)
                # Scaling the [B, k] product by 1/|w| instead of normalising the [k, D] rows saves
                # several passes over the rows, forward and backward (the same function).
                inv_norm = centres.norm(dim=1).clamp_min(1e-12).reciprocal()
                cosine = ((F.normalize(gathered, dim=1) @ centres.T) * inv_norm).clamp(-1.0, 1.0)
            logits = self.margin(cosine, sample.labels)
            del cosine  # the margin made its own [B, k] tensor
            # The margin's backward needs neither its output nor (mul by s) its input: the
            # cross-entropy may overwrite the logits with the softmax.
            loss = sharded_cross_entropy(logits, sample.labels, ctx, inplace=True)

        if self.offload and self.update == "sparse":  # start moving the optimizer state now
            assert isinstance(self.store, HostRowStore)
            self.store.prefetch(index, self._state_names())
        self._pending = _Pending(sample=sample, valid=valid, rows=rows, kept=kept, offloaded=self.offload)
        return loss

    def check_inputs(self) -> None:
        """Raise FacescaleError (on every rank) if the latest forward had a label out of range.

        Reads one flag from the device; ``forward`` calls it for the previous step.
        """
        unchecked, self._unchecked = self._unchecked, None
        if unchecked is not None and not bool(unchecked[0]):
            check_labels(unchecked[1], self.num_classes, unchecked[2])

    def _state_names(self) -> list[str]:
        return [name for name in self.store.tensors if name != "weight"]

    # -- update ------------------------------------------------------------------------------

    def step(self, lr: float, apply: torch.Tensor | None = None) -> None:
        """Apply the optimizer to the rows used by the last forward, after ``loss.backward()``.

        lr: this step's learning rate (the value the schedule gives the backbone for this step).
        apply: optional 0-dim bool tensor; False leaves every row and its state untouched (the
        trainer passes "no fp16 overflow this step"), decided on the device in sparse mode.
        The head's gradient is never loss-scaled: the trainer runs the head's backward in fp32 on
        detached embeddings and scales only the backbone's part (see ``train/trainer.py``).
        """
        pending = self._pending
        if pending is None:
            raise RuntimeError("PartialFC.step() needs a forward pass and backward() first")
        self._pending = None
        self.step_count += 1
        ok = pending.valid if apply is None else pending.valid & apply.to(pending.valid.device)
        if self.update == "dense":
            self._dense_step(lr, ok)
            return
        assert pending.rows is not None and pending.kept is not None
        if pending.kept.grad is None:
            raise RuntimeError("PartialFC.step(): the loss has no gradient yet; call loss.backward() first")
        rows = pending.rows
        if pending.offloaded:  # the fetched rows are updated on the device, then sent back
            assert isinstance(self.store, HostRowStore)
            rows = SampledRows({**rows.tensors, **self.store.collect()}, None, rows.weight)
        if self.noise is not None:
            self.noise.reseed(mixed_seed(self.seed, 2, self.step_count, self.ctx.rank))
        update_rows(rows, pending.kept, self.matmul, self.optimizer, lr, ok, self.noise)
        if pending.offloaded:
            self.store.commit(None if pending.sample.full else pending.sample.index, rows.tensors)

    def _dense_step(self, lr: float, ok: torch.Tensor) -> None:
        if self.weight.grad is None:
            raise RuntimeError("PartialFC.step(): the loss has no gradient yet; call loss.backward() first")
        if bool(ok):  # the dense mode is arcface_torch's: a host sync here is part of its cost
            set_lr(self.dense_optimizer, lr)
            self.dense_optimizer.step()
        # Freed, not zeroed: torch 2 allocates it again in the next backward, and a kept [n, D]
        # gradient would only add 4 bytes per parameter between steps.
        self.dense_optimizer.zero_grad(set_to_none=True)

    # -- state and checkpoints ---------------------------------------------------------------

    def set_centres(self, centres: torch.Tensor) -> None:
        """Overwrite this rank's class centres: ``centres`` [num_local, D], the rows of classes
        [classes.start, classes.stop) (any float dtype and device; stored in the head's). The
        optimizer state is kept as it is (zeros on a fresh head)."""
        if tuple(centres.shape) != (self.num_local, self.embedding_size):
            raise FacescaleError(
                f"set_centres: got centres of shape {list(centres.shape)}; rank {self.ctx.rank} holds "
                f"classes [{self.classes.start}, {self.classes.stop}): "
                f"expected [{self.num_local}, {self.embedding_size}]"
            )
        if self.update == "sparse":
            self.store.replace("weight", centres)
        else:
            with torch.no_grad():
                self.weight.copy_(centres)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """This rank's centres and optimizer state, rows aligned: weight [n, D], momentum [n, D]
        (sgd) or exp_avg, exp_avg_sq [n, D] and step int32 [n] (adamw). Same names in both modes."""
        if self.update == "sparse":
            self.store.flush()
            return dict(self.store.tensors)
        weight = self.weight.detach()
        state = self.dense_optimizer.state.get(self.weight, {})
        out = {"weight": weight}
        if self.optim_name == "sgd":
            if self.dense_optimizer.param_groups[0]["momentum"] != 0:
                buf = state.get("momentum_buffer")
                out["momentum"] = buf if buf is not None else torch.zeros_like(weight)
        else:
            for name in ("exp_avg", "exp_avg_sq"):  # zeros only before the first step, not on every save
                out[name] = state[name] if name in state else torch.zeros_like(weight)
            steps = int(state["step"]) if "step" in state else 0
            out["step"] = torch.full((self.num_local,), steps, dtype=torch.int32)
        return out

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.update == "sparse":
            for name in self.store.tensors:
                self.store.replace(name, tensors[name])
            return
        with torch.no_grad():
            self.weight.copy_(tensors["weight"])
        state: dict[str, object] = {}
        if "momentum" in tensors:
            state["momentum_buffer"] = tensors["momentum"].to(self.weight).clone()
        if "exp_avg" in tensors:
            state["exp_avg"] = tensors["exp_avg"].to(self.weight).clone()
            state["exp_avg_sq"] = tensors["exp_avg_sq"].to(self.weight).clone()
            state["step"] = torch.tensor(float(tensors["step"][0]))
        self.dense_optimizer.state[self.weight] = state

    def _meta(self) -> dict[str, object]:
        return {
            "num_classes": self.num_classes,
            "embedding_size": self.embedding_size,
            "world_size": self.ctx.world_size,
            "rank": self.ctx.rank,
            "class_start": self.classes.start,
            "class_stop": self.classes.stop,
            "weight_dtype": dtype_name(self.weight_dtype),
            "momentum_dtype": dtype_name(self.momentum_dtype),
            "update": self.update,
            "optimizer": self.optim_name,
            "sample_rate": self.sample_rate,
            "step": self.step_count,
        }

    def save_shard(self, directory: str | Path) -> Path:
        """Write this rank's ``head-rank{r:05d}-of-{w:05d}.pt`` into ``directory`` (all ranks call it).

        Atomic per file; shards of another world size left in the folder are removed afterwards.
        """
        self.check_inputs()
        error, path = None, Path(directory)
        try:
            path = write_shard(directory, self._meta(), self.state_tensors())
        except OSError as e:
            error = f"cannot write the head shard into {directory}: {e}"
        self.ctx.fail_together(error)
        if self.ctx.is_main:
            remove_other_world_sizes(directory, self.ctx.world_size)
        self.ctx.barrier()
        return path

    def load_shards(self, directory: str | Path) -> None:
        """Load the checkpoint in ``directory`` written by any number of processes (all ranks call it).

        This rank takes the rows of its own class range, re-cut from the saved shards. A checkpoint
        for another class count, embedding size or optimizer raises FacescaleError on every rank.
        """
        error, rows = None, {}
        try:
            rows = self._read_rows(Path(directory))
        except FacescaleError as e:
            error = str(e)
        self.ctx.fail_together(error)
        self._load_state_tensors(rows)
        self._pending = None

    def _read_rows(self, directory: Path) -> dict[str, torch.Tensor]:
        expected = {
            "num_classes": self.num_classes,
            "embedding_size": self.embedding_size,
            "optimizer": self.optim_name,
        }
        rows, meta = read_rows(directory, self.classes, expected, names=set(self.state_tensors()))
        if self.update == "dense" and "step" in rows and bool((rows["step"] != rows["step"][0]).any()):
            raise FacescaleError(
                f"head checkpoint {directory} has per-class AdamW step counts (sparse update); "
                "resume it with head.update=sparse"
            )
        self.step_count = int(meta["step"])
        return rows


def build_head(cfg: Config, num_classes: int, ctx: DistContext) -> PartialFC:
    """The head a training config describes (head.*, optim.*, model.embedding_size, train.seed)."""
    return PartialFC(
        num_classes=num_classes,
        embedding_size=cfg.model.embedding_size,
        margin=build_margin(cfg.head.margin),
        ctx=ctx,
        sample_rate=cfg.head.sample_rate,
        update=cfg.head.update,
        weight_dtype=cfg.head.weight_dtype,
        momentum_dtype=cfg.head.momentum_dtype,
        offload=cfg.head.offload,
        optim=cfg.optim,
        seed=cfg.train.seed,
        matmul_dtype=cfg.head.matmul_dtype,
    )
