"""Partial FC over 2 and 3 gloo processes (uneven shards) against one-process naive references.

Each test module fixture spawns the processes once; the workers compute errors against the
references (every process can rebuild the whole global batch from the seed) and the tests assert.
"""

import numpy as np
import pytest
import torch
from pfc_reference import MOMENTUM, WEIGHT_DECAY, NaiveSGD, arcface_full_softmax_loss, global_batch

from facescale.config import OptimConfig
from facescale.distributed.class_range import ClassRange
from facescale.distributed.context import context_from_environ
from facescale.distributed.local_launch import run_local_processes
from facescale.errors import FacescaleError
from facescale.heads.centres import init_centres
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC
from facescale.heads.sampling import num_sampled

NUM_CLASSES, DIM, PER_RANK, SEED = 11, 16, 3, 3
OPTIM = OptimConfig(name="sgd", momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
F64 = torch.float64


def _head(ctx, num_classes=NUM_CLASSES, **kwargs) -> PartialFC:
    return PartialFC(
        num_classes,
        DIM,
        arcface(),
        ctx,
        weight_dtype=F64,
        momentum_dtype=F64,
        optim=OPTIM,
        seed=SEED,
        **kwargs,
    )


def _full_init(num_classes=NUM_CLASSES) -> torch.Tensor:
    return init_centres(ClassRange(0, num_classes), DIM, SEED, F64, torch.device("cpu"))


def _local(tensor: torch.Tensor, rank: int) -> torch.Tensor:
    return tensor[rank * PER_RANK : (rank + 1) * PER_RANK]


def _numpy(tensors: dict) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in tensors.items()}


def _equivalence(ctx, update: str) -> dict:
    """Sample rate 1: loss, gradients and two SGD steps equal the full-softmax reference."""
    head = _head(ctx, sample_rate=1.0, update=update)
    start, stop = head.classes.start, head.classes.stop
    reference = NaiveSGD(_full_init())
    errors = {"loss": 0.0, "embedding_grad": 0.0, "centre_grad": 0.0, "weight": 0.0, "momentum": 0.0}
    for step, lr in enumerate([0.2, 0.1]):
        embeddings, labels = global_batch(step, ctx.world_size, PER_RANK, DIM, NUM_CLASSES)
        local = _local(embeddings, ctx.rank).clone().requires_grad_()
        loss = head(local, _local(labels, ctx.rank))
        loss.backward()
        ref_embeddings = embeddings.clone().requires_grad_()
        ref_centres = reference.weight.clone().requires_grad_()
        ref_loss = arcface_full_softmax_loss(ref_embeddings, ref_centres, labels)
        ref_loss.backward()
        errors["loss"] = max(errors["loss"], abs(loss.item() - ref_loss.item()))
        grad_err = (local.grad - _local(ref_embeddings.grad, ctx.rank)).abs().max().item()
        errors["embedding_grad"] = max(errors["embedding_grad"], grad_err)
        centre_err = (head.last_centre_grad() - ref_centres.grad[start:stop]).abs().max().item()
        errors["centre_grad"] = max(errors["centre_grad"], centre_err)
        head.step(lr)
        reference.step(ref_centres.grad, lr)
        state = head.state_tensors()
        weight_err = (state["weight"] - reference.weight[start:stop]).abs().max().item()
        errors["weight"] = max(errors["weight"], weight_err)
        momentum_err = (state["momentum"] - reference.momentum[start:stop]).abs().max().item()
        errors["momentum"] = max(errors["momentum"], momentum_err)
    return {"errors": errors, "head": head}


def _sampling(ctx) -> dict:
    """Sample rate 0.25 over 40 classes: sample contents, loss vs the reference on the sampled columns."""
    num_classes, rate = 40, 0.25
    head = _head(ctx, num_classes=num_classes, sample_rate=rate)
    embeddings, _ = global_batch(7, ctx.world_size, PER_RANK, DIM, num_classes)
    # Rank 0's shard gets more positives than its sample size, the others fewer.
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 39, 39, 30, 21, 22, 23][: ctx.world_size * PER_RANK])
    local = _local(embeddings, ctx.rank).clone().requires_grad_()
    before = _numpy(head.state_tensors())
    loss = head(local, _local(labels, ctx.rank))
    loss.backward()
    sample = head.last_sample
    start = head.classes.start
    positives = sorted({int(y) - start for y in labels if int(y) in head.classes})
    index = sample.index.tolist()
    out = {
        "positives_kept": set(positives) <= set(index),
        "size": (len(index), max(num_sampled(rate, head.num_local), len(positives))),
        "remap_ok": all(
            (int(y) in head.classes and index[m] + start == int(y))
            or (int(y) not in head.classes and m == -1)
            for y, m in zip(labels, sample.labels.tolist())
        ),
    }
    # Reference: full softmax restricted to the union of every rank's sampled classes.
    sampled = sorted(c for part in ctx.all_gather_object([i + start for i in index]) for c in part)
    columns = torch.tensor(sampled)
    remapped = torch.searchsorted(columns, labels)
    ref_embeddings = embeddings.clone().requires_grad_()
    ref_loss = arcface_full_softmax_loss(ref_embeddings, _full_init(num_classes)[columns], remapped)
    ref_loss.backward()
    out["loss_err"] = abs(loss.item() - ref_loss.item())
    out["embedding_grad_err"] = (local.grad - _local(ref_embeddings.grad, ctx.rank)).abs().max().item()
    head.step(0.5)
    after = _numpy(head.state_tensors())
    unsampled = np.ones(head.num_local, dtype=bool)
    unsampled[index] = False
    out["unsampled_identical"] = all(
        np.array_equal(before[k][unsampled], after[k][unsampled]) for k in before
    )
    out["sampled_moved"] = bool((before["weight"][index] != after["weight"][index]).any(axis=1).all())

    dense = _head(ctx, num_classes=num_classes, sample_rate=rate, update="dense")
    dense_before = dense.state_tensors()["weight"].clone()
    dense(_local(embeddings, ctx.rank), _local(labels, ctx.rank)).backward()
    dense.step(0.5)
    out["dense_all_moved"] = bool((dense.state_tensors()["weight"] != dense_before).any(dim=1).all())
    return out


def _main_worker(environ, load_from, save_to):
    ctx = context_from_environ(environ, "cpu", timeout_s=60)
    out = {"rank": ctx.rank, "classes": (0, 0)}
    for update in ("sparse", "dense"):
        result = _equivalence(ctx, update)
        out[f"equivalence_{update}"] = result["errors"]
        if update == "sparse":
            trained = result["head"]
            out["classes"] = (trained.classes.start, trained.classes.stop)
            if save_to:
                trained.save_shard(save_to)
                out["saved"] = _numpy(trained.state_tensors())
    out["sampling"] = _sampling(ctx)
    if load_from:
        resumed = _head(ctx)
        resumed.load_shards(load_from)
        out["loaded"] = _numpy(resumed.state_tensors())
        out["loaded_step"] = resumed.step_count
    ctx.shutdown()
    return out


def _error_of(fn):
    try:
        fn()
    except FacescaleError as e:
        return str(e)
    return None


def _bad_input_worker(environ, checkpoint):
    ctx = context_from_environ(environ, "cpu", timeout_s=60)
    head = _head(ctx)
    embeddings, labels = global_batch(0, ctx.world_size, PER_RANK, DIM, NUM_CLASSES)
    local_e, local_l = _local(embeddings, ctx.rank), _local(labels, ctx.rank).clone()
    out = {}
    bad_labels = local_l.clone()
    if ctx.rank == 1:
        bad_labels[2] = 99
    head(local_e, bad_labels)
    out["label"] = _error_of(head.check_inputs)
    rows = PER_RANK + ctx.rank
    out["batch"] = _error_of(
        lambda: head(torch.randn(rows, DIM, dtype=F64), torch.zeros(rows, dtype=torch.long))
    )
    out["classes"] = _error_of(lambda: _head(ctx, num_classes=NUM_CLASSES + ctx.rank))
    head.save_shard(checkpoint)
    out["checkpoint"] = _error_of(lambda: _head(ctx, num_classes=NUM_CLASSES + 1).load_shards(checkpoint))
    loss = head(local_e, local_l)  # the group is still in step after all of the above
    out["loss_after"] = loss.item()
    ctx.shutdown()
    return out


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pfc_checkpoint")


@pytest.fixture(scope="module")
def two(checkpoint_dir):
    return run_local_processes(_main_worker, 2, args=(None, str(checkpoint_dir)), timeout_s=120)


@pytest.fixture(scope="module")
def three(two, checkpoint_dir):
    return run_local_processes(_main_worker, 3, args=(str(checkpoint_dir), None), timeout_s=120)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("update", ["sparse", "dense"])
def test_rate_one_matches_single_process_full_softmax(world, update, request):
    results = request.getfixturevalue({2: "two", 3: "three"}[world])
    assert [r["classes"] for r in results] == {2: [(0, 6), (6, 11)], 3: [(0, 4), (4, 8), (8, 11)]}[world]
    for r in results:
        for name, err in r[f"equivalence_{update}"].items():
            assert err < 1e-9, (r["rank"], name, err)


@pytest.mark.parametrize("world", [2, 3])
def test_sampling_across_ranks(world, request):
    for r in request.getfixturevalue({2: "two", 3: "three"}[world]):
        s = r["sampling"]
        assert s["positives_kept"] and s["remap_ok"], r["rank"]
        assert s["size"][0] == s["size"][1], (r["rank"], s["size"])
        assert s["loss_err"] < 1e-9 and s["embedding_grad_err"] < 1e-9
        assert s["unsampled_identical"] and s["sampled_moved"]
        assert s["dense_all_moved"]


def test_positives_beyond_the_sample_size_are_all_kept(two):
    # rank 0 holds 6 positives (labels 0..5), more than int(0.25 * 20) = 5
    assert two[0]["sampling"]["size"] == (6, 6)
    assert two[1]["sampling"]["size"] == (5, 5)


def _concat(results, key):
    return {name: np.concatenate([r[key][name] for r in results]) for name in results[0][key]}


def test_resharding_two_to_three_and_to_one(two, three, checkpoint_dir):
    saved = _concat(two, "saved")
    loaded = _concat(three, "loaded")
    assert set(saved) == {"weight", "momentum"} and saved["weight"].shape == (NUM_CLASSES, DIM)
    for name in saved:
        assert np.array_equal(saved[name], loaded[name]), name
    assert all(r["loaded_step"] == 2 for r in three)
    from facescale.distributed.context import DistContext

    single = _head(DistContext.single("cpu"))
    single.load_shards(checkpoint_dir)
    for name, tensor in single.state_tensors().items():
        assert np.array_equal(tensor.numpy(), saved[name]), name


def test_bad_input_fails_on_every_rank_without_hanging(tmp_path):
    results = run_local_processes(_bad_input_worker, 2, args=(str(tmp_path),), timeout_s=90)
    for r in results:
        assert "label 99 of sample 2 on rank 1 is outside [0, 11)" in r["label"]
        assert "disagree on the batch size (rank 0: 3, rank 1: 4)" in r["batch"]
        assert "'num_classes': 11" in r["classes"] and "'num_classes': 12" in r["classes"]
        assert "num_classes 11; this run has 12" in r["checkpoint"]
    assert results[0]["loss_after"] == results[1]["loss_after"] > 0
