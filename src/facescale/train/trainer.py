"""The training loop: backbone -> embeddings -> Partial FC head -> loss, top to bottom.

One process per device. The backbone is data parallel (DDP when there are several
processes); the head is model parallel and is never wrapped: each process owns a shard of
the class centres and updates only its sampled rows itself (heads/partial_fc.py).

The backward pass runs in two stages. The head computes in fp32 on a detached copy of the
embeddings, so its gradients are never loss-scaled; the embedding gradient is then pushed
through the backbone (scaled for fp16). The head's loss is the mean over the *global* batch,
and its all-gather returns each rank the exact gradient of that mean for its own samples;
DDP then *sums* the backbone gradients over ranks (``exact_gradients=True``) instead of
averaging them, so N processes of batch B take exactly the step one process of batch N*B would.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from facescale.config import Config, save_config, to_dict
from facescale.data.datasets import open_dataset
from facescale.data.loader_factory import build_train_loader
from facescale.distributed.context import DistContext
from facescale.errors import DataError, FacescaleError
from facescale.eval.sets import VerificationSet, load_set
from facescale.eval.thresholds import thresholds_from_results, write_thresholds
from facescale.eval.torch_embed import module_embed_fn
from facescale.eval.verification import VerificationResult, evaluate_verification, format_result
from facescale.heads.partial_fc import build_head
from facescale.models import backbone_from_config
from facescale.models.factory import spec_from_config
from facescale.models.loading import load_initial_weights
from facescale.models.run_layout import CONFIG_FILE, latest_step_dir
from facescale.optim_factory import build_optimizer, scaled_lr, set_lr
from facescale.train.bad_data import gather_bad_data_reports
from facescale.train.checkpoint import CheckpointManager, export_backbone
from facescale.train.finite import nonfinite_report
from facescale.train.monitor import TrainMonitor
from facescale.train.precision import head_update_ok, resolve_precision
from facescale.train.preemption import Preempted, SignalVote, StopRequest, signal_name
from facescale.train.schedule import PolynomialWarmup

# DDP's "do not broadcast buffers every forward": torch 2.13 renamed broadcast_buffers.
_DDP_ARGS = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
_NO_BUFFER_SYNC = {
    "forward_sync_buffers" if "forward_sync_buffers" in _DDP_ARGS else "broadcast_buffers": False
}


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    samples_per_s: float
    verification: dict[str, dict[str, float]] = field(default_factory=dict)


def verify(
    backbone: torch.nn.Module, sets: list[VerificationSet], cfg: Config
) -> dict[str, VerificationResult]:
    """Verification accuracy on each set (the backbone comes back in the mode it was in)."""
    embed = module_embed_fn(backbone, batch_size=cfg.eval.batch_size)
    results = {}
    for vset in sets:
        result = evaluate_verification(
            embed, vset.images, vset.issame, flip=cfg.eval.flip, batch_size=cfg.eval.batch_size
        )
        results[vset.name] = result
    return results


def prepare_run_dir(cfg: Config, resume: bool) -> Path:
    run_dir = Path(cfg.train.output)
    has_checkpoints = latest_step_dir(run_dir) is not None
    if has_checkpoints and not resume:
        raise FacescaleError(
            f"run directory {run_dir} already holds checkpoints; continue it with "
            f"`facescale train --resume {run_dir}` or choose another -o train.output=..."
        )
    return run_dir


def train(
    cfg: Config, ctx: DistContext, resume: bool = False, stop: StopRequest | None = None
) -> TrainResult:
    """Run (or continue, with ``resume``) the training described by ``cfg`` on this process.

    ``stop`` (set by the CLI's SIGTERM / SIGINT handlers) ends the run after the current step
    with a checkpoint on every rank, then raises ``Preempted`` (exit code 128 + signal).
    """
    run_dir = prepare_run_dir(cfg, resume)
    device = ctx.device
    precision = resolve_precision(cfg.train.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest conv kernels once
    torch.manual_seed(cfg.train.seed + ctx.rank)

    # Data. Every rank must agree on the class count and batch size, or the head's shards and
    # collectives would silently disagree; agree() raises on every rank instead of hanging one.
    dataset = open_dataset(cfg.data)
    num_classes = cfg.data.num_classes or dataset.num_classes
    if cfg.data.num_classes and dataset.num_classes > cfg.data.num_classes:
        raise DataError(
            f"data.num_classes={cfg.data.num_classes} but {cfg.data.root} has labels up to "
            f"{dataset.num_classes - 1}"
        )
    ctx.agree("data.num_classes", num_classes)
    ctx.agree("data.batch_size", cfg.data.batch_size)
    on_gpu = device.type == "cuda"  # then batches are normalised on the device, the next one copied ahead
    loader = build_train_loader(
        dataset,
        cfg.data,
        ctx.rank,
        ctx.world_size,
        cfg.train.seed,
        pin_memory=on_gpu,
        device=device if on_gpu else None,
    )
    steps_per_epoch = len(loader)  # the loader refuses a dataset smaller than one global batch
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    global_batch = cfg.data.batch_size * ctx.world_size
    schedule = PolynomialWarmup(
        base_lr=scaled_lr(cfg.optim, global_batch),
        total_steps=total_steps,
        warmup_steps=min(total_steps, int(cfg.optim.warmup_epochs * steps_per_epoch)),
        power=cfg.optim.power,
    )

    # Model, head, optimizer.
    backbone = backbone_from_config(cfg.model).to(device)
    if cfg.model.init_weights:
        load_initial_weights(backbone, cfg.model.init_weights)
        init_note = f"initial weights: loaded {cfg.model.init_weights} (model.init_weights)"
    else:
        init_note = "initial weights: random (no model.init_weights)"
    if cfg.model.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    head = build_head(cfg, num_classes, ctx)
    if cfg.head.init_weights:  # arcface_torch's per-rank head files (on resume the checkpoint replaces them)
        from facescale.heads.head_init import init_head_from_arcface_torch

        init_head_from_arcface_torch(head, cfg.head.init_weights)
        init_note += f"; head centres: loaded {cfg.head.init_weights} (head.init_weights)"
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, cfg.optim, schedule.base_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.uses_grad_scaler)
    checkpoints = CheckpointManager(run_dir, ctx, cfg.train.keep_checkpoints)
    backbone_spec = spec_from_config(cfg.model).to_dict()

    step = 0
    if resume:
        latest = checkpoints.latest()
        if latest is None:
            raise FacescaleError(f"{run_dir} has no complete checkpoint to resume from")
        state = checkpoints.load(latest, head)
        if state["scheduler"] != schedule.state_dict() and ctx.rank == 0:
            # Legitimate (a longer run, another world size); still worth telling, as it changes the LR curve.
            print(
                f"note: the LR schedule changed on resume: {state['scheduler']} -> {schedule.state_dict()}",
                flush=True,
            )
        backbone.load_state_dict(state["backbone"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
    if ctx.rank == 0:  # on resume too: overrides given then (e.g. more epochs) must survive the next resume
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / CONFIG_FILE)
    ctx.barrier()

    # arcface_torch's DDP settings: BN statistics stay per rank (no buffer broadcast each step),
    # gradients live in the all-reduce buckets (no copy), and the graph is the same every step.
    model = ctx.wrap_data_parallel(
        backbone, exact_gradients=True, gradient_as_bucket_view=True, static_graph=True, **_NO_BUFFER_SYNC
    )
    if cfg.model.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    val_sets = [load_set(path) for path in cfg.eval.bins] if ctx.rank == 0 else []
    monitor = TrainMonitor(
        run_dir,
        total_steps,
        step,
        global_batch,
        cfg.train.log_every,
        enabled=ctx.rank == 0,
        tensorboard=cfg.train.tensorboard,
        progress=cfg.train.progress,
    )
    monitor.write(
        f"training {cfg.model.name} on {len(dataset)} images of {num_classes} identities: "
        f"{ctx.world_size} process(es) on {device}, {precision.name}, global batch {global_batch}, "
        f"{steps_per_epoch} steps/epoch, {total_steps} steps" + (f", resuming at step {step}" if step else "")
    )
    monitor.write(init_note + (f"; replaced by the checkpoint of step {step}" if resume else ""))
    # Set on the device whenever a step's loss is not finite; read only before a save, so no step
    # waits for the device, and no checkpoint of NaN weights is ever written (pruning would then
    # delete the good ones).
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def save(step: int, epoch: int) -> None:
        ctx.fail_together(nonfinite_report(nonfinite, backbone, step))
        trainer_state = {
            "backbone": backbone.state_dict(),
            "backbone_spec": backbone_spec,
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": epoch,
            "config": to_dict(cfg),
        }
        checkpoints.save(step, trainer_state, head)

    latest_results: dict[str, VerificationResult] = {}

    def evaluate(step: int) -> dict[str, dict[str, float]]:
        results = verify(backbone, val_sets, cfg) if val_sets else {}
        latest_results.update(results)
        summary = {}
        for name, result in results.items():
            monitor.write(f"step {step} | " + format_result(name, result))
            monitor.scalars(
                step, {f"val/{name}/accuracy": result.accuracy_mean, f"val/{name}/xnorm": result.xnorm}
            )
            summary[name] = {"accuracy_mean": result.accuracy_mean, "accuracy_std": result.accuracy_std}
        return summary

    if resume and step >= total_steps:
        # Nothing to train or evaluate again. The checkpoint is saved once more (``latest`` moves
        # atomically) so that it holds one head shard per process of this launch.
        monitor.write(
            f"{run_dir} already finished at step {step} of {total_steps}; not training or evaluating "
            f"again (checkpoint re-saved for {ctx.world_size} process(es); raise train.max_steps or "
            "train.epochs with -o to train further)"
        )
        save(step, (step - 1) // steps_per_epoch)
        monitor.close()
        ctx.barrier()
        return TrainResult(run_dir, step, math.nan, 0.0, {})

    loss_value = math.nan
    verification: dict[str, dict[str, float]] = {}
    vote = SignalVote(stop, ctx)  # SIGTERM / SIGINT on any rank: all stop after the same step
    model.train()
    while step < total_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        # A resumed run re-enters its epoch part way: the epoch's order is a pure function of
        # (seed, epoch), so starting after the batches already used reproduces the uninterrupted run.
        loader.set_epoch(epoch, start_batch=skip)
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if cfg.model.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            lr = schedule(step)
            set_lr(optimizer, lr)

            with precision.autocast():
                embeddings = model(images)
            features = embeddings.detach().float().requires_grad_()
            loss = head(features, labels)
            loss.backward()
            assert features.grad is not None
            embeddings.backward(scaler.scale(features.grad).to(embeddings.dtype))

            if cfg.optim.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(backbone.parameters(), cfg.optim.clip_grad_norm)
            scaler.step(optimizer)
            head_ok = head_update_ok(scaler, optimizer, features)  # fp16: skip the head when the scaler skips
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            head.step(lr, apply=head_ok)

            step += 1
            nonfinite |= ~torch.isfinite(loss.detach())
            monitor.step(step, epoch, loss.detach(), lr)
            # Reading the loss waits for the device, so only at log steps (same value on every rank).
            if step % cfg.train.log_every == 0 or step == total_steps:
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise FacescaleError(
                        f"loss became {loss_value} at step {step} (lr {lr:.4g}); lower optim.lr or "
                        "raise optim.warmup_epochs"
                    )
            if step == total_steps:
                break
            if cfg.train.eval_every and step % cfg.train.eval_every == 0:
                monitor.pause()
                if ctx.rank == 0:
                    verification = evaluate(step)
                ctx.barrier()
                monitor.resume()
            saved = bool(cfg.train.save_every and step % cfg.train.save_every == 0)
            if saved:
                monitor.pause()
                save(step, epoch)
                monitor.resume()
            signum = vote()
            if signum:
                monitor.pause()
                if not saved:
                    save(step, epoch)
                message = (
                    f"stopped by {signal_name(signum)} after step {step} of {total_steps}; checkpoint "
                    f"{checkpoints.latest_name()} written on all {ctx.world_size} rank(s); continue with: "
                    f"facescale train --resume {run_dir}"
                )
                monitor.write(message)
                monitor.close()
                raise Preempted(message, signum)
        report = gather_bad_data_reports(ctx, loader.bad_data_report())
        if report:
            monitor.write(report)

    monitor.pause()
    epoch = (step - 1) // steps_per_epoch
    save(step, epoch)
    if ctx.rank == 0:
        export_backbone(run_dir, backbone.state_dict(), backbone_spec)
        verification = evaluate(step)
        # the cosine at FAR 1e-3 / 1e-4 per set, for `facescale gallery build` to use
        write_thresholds(run_dir, thresholds_from_results(latest_results))
    samples_per_s = monitor.last_samples_per_s
    monitor.close()
    ctx.barrier()
    return TrainResult(run_dir, step, loss_value, samples_per_s, verification)
