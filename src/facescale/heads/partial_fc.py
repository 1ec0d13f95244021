"""Partial FC: class centres sharded over ranks, a sampled subset per step, a sparse update.

Per step, on every rank (B = global batch, b = B / world_size, n = this rank's classes):

1. the ranks exchange batch sizes, then all-gather labels [B] and check them (a bad label raises
   on every rank, naming the label and the rank it came from);
2. ``sample_classes`` picks k rows: every positive of the global batch held here plus uniform
   negatives up to int(sample_rate * n); labels are remapped into those k rows;
3. embeddings are all-gathered with a differentiable gather (each rank's slice of the gradient
   returns to it, summed over ranks);
4. cosine [B, k] = normalize(embeddings) @ normalize(centres[index]).T in fp32 (fp64 when the
   centres are fp64), margin on the target column, sharded softmax cross-entropy: the loss is
   the mean over the global batch, the same on every rank;
5. ``step(lr)`` after backward. Sparse mode (default): the k sampled rows were copied into a
   small leaf tensor, so backward yields a [k, D] gradient and the update (SGD momentum + weight
   decay, or AdamW) touches those rows only; other rows stay bit-identical. Dense mode is
   arcface_torch's: the whole [n, D] shard is a parameter with a dense gradient and torch's
   optimizer decays and moves every row each step.

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

from facescale.config import Config, OptimConfig
from facescale.distributed.class_range import class_range
from facescale.distributed.collectives import all_gather_with_grad, sharded_cross_entropy
from facescale.distributed.context import DistContext
from facescale.errors import ConfigError, FacescaleError
from facescale.heads.batch_checks import check_batch_shapes, check_labels
from facescale.heads.centres import dtype_name, init_centres, parse_dtype
from facescale.heads.margins import MarginFn, build_margin
from facescale.heads.row_store import DeviceRowStore, HostRowStore
from facescale.heads.sampling import ClassSample, mixed_seed, sample_classes, sampling_seed
from facescale.heads.shard_io import read_rows, remove_other_world_sizes, write_shard
from facescale.heads.sparse_optim import build_sparse_optimizer, stochastic_round_bf16
from facescale.optim_factory import build_optimizer, set_lr


@dataclass
class _Pending:
    """What a forward pass leaves for ``step``: the sample and the leaf rows that got the gradient."""

    sample: ClassSample
    rows: torch.Tensor | None  # sparse: [k, D] compute-dtype leaf; dense: None
    state: dict[str, torch.Tensor] | None  # offload: optimizer-state rows prefetched during forward


class PartialFC:
    """Class-sharded margin-softmax head: ``loss = head(embeddings, labels)``, backward, ``head.step(lr)``.

    num_classes: all classes of the dataset (split over ctx.world_size ranks);
    margin: callable (cosine [B, k], labels [B]) -> logits [B, k] (see heads.margins);
    sample_rate: in [0, 1]; update: "sparse" | "dense"; weight_dtype / momentum_dtype: "float32",
    "bfloat16", "float16" (or "float64"); offload: keep centres and state in host memory;
    optim: name (sgd | adamw), momentum, betas, weight_decay (lr comes with each ``step``);
    seed: initialisation and sampling.
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
    ) -> None:
        optim = optim or OptimConfig()
        self.weight_dtype = parse_dtype(weight_dtype, "head.weight_dtype")
        self.momentum_dtype = parse_dtype(momentum_dtype, "head.momentum_dtype")
        if update not in ("sparse", "dense"):
            raise ConfigError(f"head.update: {update!r} is not one of sparse, dense")
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
        self.compute_dtype = torch.float64 if self.weight_dtype == torch.float64 else torch.float32
        self.step_count = 0
        self._pending: _Pending | None = None

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
        if pending.rows is not None:
            return pending.rows.grad
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
        """
        ctx, device = self.ctx, self.ctx.device
        local_batch = check_batch_shapes(ctx, embeddings, labels, self.embedding_size)
        global_labels = ctx.all_gather(labels.reshape(-1).to(device=device, dtype=torch.int64))
        check_labels(global_labels, self.num_classes, local_batch)

        sample_device = torch.device("cpu") if self.offload else device
        generator = torch.Generator(device=sample_device)
        generator.manual_seed(sampling_seed(self.seed, self.step_count, ctx.rank))
        sample = sample_classes(global_labels.to(sample_device), self.classes, self.sample_rate, generator)
        sample.labels = sample.labels.to(device)
        index = None if sample.full else sample.index

        with torch.autocast(device_type=device.type, enabled=False):
            gathered = all_gather_with_grad(embeddings, ctx).to(self.compute_dtype)
            rows: torch.Tensor | None = None
            if self.update == "sparse":
                stored = self.store.fetch(index, ["weight"])["weight"]
                rows = stored.to(self.compute_dtype).requires_grad_()
                centres = rows
            else:
                centres = self.weight if index is None else self.weight.index_select(0, index)
                centres = centres.to(self.compute_dtype)
            # Scaling the [B, k] product by 1/|w| instead of normalising the [k, D] rows saves
            # several passes over the rows, forward and backward (the same function).
            inv_norm = centres.norm(dim=1).clamp_min(1e-12).reciprocal()
            cosine = ((F.normalize(gathered, dim=1) @ centres.T) * inv_norm).clamp(-1.0, 1.0)
            logits = self.margin(cosine, sample.labels)
            loss = sharded_cross_entropy(logits, sample.labels, ctx)

        state = None
        if self.offload and self.update == "sparse":  # start moving the optimizer state now
            state = self.store.fetch(index, self._state_names())
        self._pending = _Pending(sample=sample, rows=rows, state=state)
        return loss

    def _state_names(self) -> list[str]:
        return [name for name in self.store.tensors if name != "weight"]

    # -- update ------------------------------------------------------------------------------

    def step(self, lr: float) -> None:
        """Apply the optimizer to the rows used by the last forward, after ``loss.backward()``.

        lr: this step's learning rate (the value the schedule gives the backbone for this step).
        The head's gradient is never loss-scaled: the trainer runs the head's backward in fp32 on
        detached embeddings and scales only the backbone's part (see ``train/trainer.py``).
        """
        pending = self._pending
        if pending is None:
            raise RuntimeError("PartialFC.step() needs a forward pass and backward() first")
        self._pending = None
        self.step_count += 1
        if self.update == "dense":
            self._dense_step(lr)
            return
        assert pending.rows is not None
        grad = pending.rows.grad
        if grad is None:
            raise RuntimeError("PartialFC.step(): the loss has no gradient yet; call loss.backward() first")
        index = None if pending.sample.full else pending.sample.index
        state = pending.state if pending.state is not None else self.store.fetch(index, self._state_names())
        state = {k: v.to(self.compute_dtype) if v.is_floating_point() else v for k, v in state.items()}
        weight = pending.rows.detach()
        self.optimizer.update(weight, grad, state, lr)
        self.store.commit(index, self._rounded({"weight": weight, **state}))

    def _rounded(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rows headed for bf16 storage are rounded stochastically (reproducibly: seeded by step, rank)."""
        targets = {name: self.store.tensors[name].dtype for name in rows}
        if torch.bfloat16 not in targets.values():
            return rows
        device = next(iter(rows.values())).device
        generator = torch.Generator(device=device)
        generator.manual_seed(mixed_seed(self.seed, 2, self.step_count, self.ctx.rank))
        return {
            name: stochastic_round_bf16(values, generator) if targets[name] == torch.bfloat16 else values
            for name, values in rows.items()
        }

    def _dense_step(self, lr: float) -> None:
        if self.weight.grad is None:
            raise RuntimeError("PartialFC.step(): the loss has no gradient yet; call loss.backward() first")
        set_lr(self.dense_optimizer, lr)
        self.dense_optimizer.step()
        self.dense_optimizer.zero_grad(set_to_none=False)  # arcface_torch keeps the dense gradient

    # -- state and checkpoints ---------------------------------------------------------------

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
    )
