"""Partial FC in one process (no process group): exactness, sparse vs dense, dtypes, checkpoints, errors."""

import pytest
import torch
from pfc_reference import MOMENTUM, WEIGHT_DECAY, NaiveSGD, arcface_full_softmax_loss, global_batch

from facescale.config import Config, OptimConfig
from facescale.distributed.class_range import ClassRange
from facescale.distributed.context import DistContext
from facescale.errors import ConfigError, FacescaleError
from facescale.heads.centres import init_centres
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC, build_head
from facescale.heads.shard_io import shard_filename

CPU = DistContext.single("cpu")
OPTIM = OptimConfig(name="sgd", momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def make_head(num_classes=12, dim=6, ctx=CPU, **kwargs) -> PartialFC:
    kwargs.setdefault("weight_dtype", "float64")
    kwargs.setdefault("momentum_dtype", kwargs["weight_dtype"])
    kwargs.setdefault("optim", OPTIM)
    return PartialFC(num_classes, dim, arcface(), ctx, seed=3, **kwargs)


def train_step(head, step, per_rank=5, lr=0.2):
    embeddings, labels = global_batch(step, 1, per_rank, head.embedding_size, head.num_classes)
    embeddings.requires_grad_()
    loss = head(embeddings, labels)
    loss.backward()
    return loss, embeddings, labels


@pytest.mark.parametrize("update", ["sparse", "dense"])
def test_rate_one_equals_full_softmax_reference(update):
    head = make_head(update=update)
    reference = NaiveSGD(head.state_tensors()["weight"])
    for step, lr in enumerate([0.2, 0.1]):
        loss, embeddings, labels = train_step(head, step, lr=lr)
        ref_embeddings = embeddings.detach().clone().requires_grad_()
        ref_centres = reference.weight.clone().requires_grad_()
        ref_loss = arcface_full_softmax_loss(ref_embeddings, ref_centres, labels)
        ref_loss.backward()
        assert abs(loss.item() - ref_loss.item()) < 1e-9
        torch.testing.assert_close(embeddings.grad, ref_embeddings.grad, atol=1e-9, rtol=0)
        torch.testing.assert_close(head.last_centre_grad(), ref_centres.grad, atol=1e-9, rtol=0)
        head.step(lr)
        reference.step(ref_centres.grad, lr)
        torch.testing.assert_close(head.state_tensors()["weight"], reference.weight, atol=1e-9, rtol=0)
        torch.testing.assert_close(head.state_tensors()["momentum"], reference.momentum, atol=1e-9, rtol=0)


def test_sparse_update_leaves_unsampled_rows_bit_identical():
    head = make_head(num_classes=40, sample_rate=0.25)
    before = {k: v.clone() for k, v in head.state_tensors().items()}
    train_step(head, 0)
    sampled = head.last_sample.index
    head.step(0.5)
    after = head.state_tensors()
    unsampled = torch.ones(40, dtype=torch.bool)
    unsampled[sampled] = False
    assert len(sampled) == 10 and int(unsampled.sum()) == 30
    for name in before:
        assert torch.equal(after[name][unsampled], before[name][unsampled])
    assert bool((after["weight"][sampled] != before["weight"][sampled]).any(dim=1).all())


def test_sparse_rows_follow_the_naive_rule_over_several_steps():
    head = make_head(num_classes=40, sample_rate=0.25)
    reference = NaiveSGD(head.state_tensors()["weight"])
    for step in range(3):
        train_step(head, step)
        grad = torch.zeros_like(reference.weight)
        grad[head.last_sample.index] = head.last_centre_grad()
        reference.step(grad, 0.3, rows=head.last_sample.index)
        head.step(0.3)
    torch.testing.assert_close(head.state_tensors()["weight"], reference.weight, atol=1e-12, rtol=0)
    torch.testing.assert_close(head.state_tensors()["momentum"], reference.momentum, atol=1e-12, rtol=0)


def test_dense_update_moves_every_row():
    head = make_head(num_classes=40, sample_rate=0.25, update="dense")
    before = head.state_tensors()["weight"].clone()
    train_step(head, 0)
    head.step(0.5)
    moved = (head.state_tensors()["weight"] != before).any(dim=1)
    assert bool(moved.all())


def test_offload_gives_the_same_result_as_the_device_store():
    heads = [make_head(num_classes=30, sample_rate=0.3, offload=flag) for flag in (False, True)]
    for step in range(3):
        for head in heads:
            train_step(head, step)
            head.step(0.2)
    a, b = (h.state_tensors() for h in heads)
    for name in a:
        assert torch.equal(a[name], b[name])


@pytest.mark.parametrize(
    ("update", "weight_dtype", "momentum_dtype", "optim", "bytes_per_class"),
    [
        ("dense", "float32", "float32", "sgd", 6144),
        ("sparse", "float32", "float32", "sgd", 4096),
        ("sparse", "bfloat16", "float32", "sgd", 3072),
        ("sparse", "bfloat16", "bfloat16", "sgd", 2048),
        ("sparse", "float16", "float16", "sgd", 2048),
        ("sparse", "float32", "float32", "adamw", 6148),
    ],
)
def test_training_state_bytes_per_class_at_512d(update, weight_dtype, momentum_dtype, optim, bytes_per_class):
    head = make_head(
        num_classes=4,
        dim=512,
        update=update,
        weight_dtype=weight_dtype,
        momentum_dtype=momentum_dtype,
        optim=OptimConfig(name=optim),
    )
    train_step(head, 0, per_rank=2)
    head.step(0.1)  # torch.optim creates its state lazily
    assert head.state_bytes() / head.num_local == bytes_per_class


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lean_dtypes_train(dtype):
    head = make_head(
        num_classes=8, dim=16, weight_dtype=dtype, momentum_dtype=dtype, optim=OptimConfig(lr=0.1)
    )
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(8, 16, generator=gen)
    labels = torch.arange(8)
    losses = []
    for _ in range(15):
        loss = head(embeddings, labels)
        loss.backward()
        head.step(1.0)
        losses.append(loss.item())
    assert head.state_tensors()["weight"].dtype == getattr(torch, dtype)
    assert losses[-1] < 0.5 * losses[0]


def test_init_does_not_depend_on_the_world_size():
    full = init_centres(ClassRange(0, 40000), 4, seed=1, dtype=torch.float32, device=torch.device("cpu"))
    part = init_centres(ClassRange(16000, 33000), 4, seed=1, dtype=torch.float32, device=torch.device("cpu"))
    assert torch.equal(full[16000:33000], part)
    assert abs(float(full.std()) - 0.01) < 1e-3


def test_checkpoint_round_trip_and_cross_mode_load(tmp_path):
    head = make_head(num_classes=20, sample_rate=0.5)
    for step in range(2):
        train_step(head, step)
        head.step(0.3)
    path = head.save_shard(tmp_path)
    assert path.name == shard_filename(0, 1) == "head-rank00000-of-00001.pt"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    for options in ({"update": "sparse"}, {"update": "dense"}, {"offload": True}):
        other = make_head(num_classes=20, sample_rate=0.5, **options)
        other.load_shards(tmp_path)
        assert other.step_count == 2
        for name, tensor in head.state_tensors().items():
            assert torch.equal(other.state_tensors()[name], tensor), (options, name)


def test_checkpoint_for_other_classes_or_dim_is_refused(tmp_path):
    make_head(num_classes=20).save_shard(tmp_path)
    with pytest.raises(FacescaleError, match="num_classes 20; this run has 21"):
        make_head(num_classes=21).load_shards(tmp_path)
    with pytest.raises(FacescaleError, match="embedding_size 6; this run has 8"):
        make_head(num_classes=20, dim=8).load_shards(tmp_path)
    with pytest.raises(FacescaleError, match="missing does not exist"):
        make_head(num_classes=20).load_shards(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacescaleError, match="no head shard files"):
        make_head(num_classes=20).load_shards(tmp_path / "empty")


def test_bad_labels_and_shapes_name_the_value():
    head = make_head(num_classes=10)
    before = head.state_tensors()["weight"].clone()
    # Checked on the device, read at the next call (no host sync in the step); nothing is updated.
    head(torch.randn(4, 6, dtype=torch.float64), torch.tensor([1, 2, 10, -1])).backward()
    head.step(0.5)
    assert torch.equal(head.state_tensors()["weight"], before)
    with pytest.raises(FacescaleError, match=r"label 10 of sample 2 on rank 0 is outside \[0, 10\)"):
        head(torch.randn(4, 6, dtype=torch.float64), torch.tensor([1, 2, 3, 4]))
    head(torch.randn(4, 6, dtype=torch.float64), torch.tensor([1, 2, 99, 4]))
    with pytest.raises(FacescaleError, match=r"label 99 of sample 2"):
        head.check_inputs()
    with pytest.raises(FacescaleError, match=r"shape \[4, 5\] \(expected \[batch, 6\]\)"):
        head(torch.randn(4, 5), torch.tensor([1, 2, 3, 4]))
    with pytest.raises(FacescaleError, match="3 labels for 4 embeddings"):
        head(torch.randn(4, 6), torch.tensor([1, 2, 3]))


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"offload needs head\.update=sparse"):
        make_head(update="dense", offload=True)
    with pytest.raises(
        ConfigError, match=r"head\.offload with head\.sample_rate=1\.0 would copy the whole shard"
    ):
        make_head(offload=True, sample_rate=1.0)
    with pytest.raises(ConfigError, match=r"head\.matmul_dtype: 'int8' is not one of"):
        make_head(matmul_dtype="int8")
    with pytest.raises(ConfigError, match="momentum_dtype bfloat16"):
        make_head(update="dense", weight_dtype="float32", momentum_dtype="bfloat16")
    with pytest.raises(ConfigError, match="'float8' is not one of"):
        make_head(weight_dtype="float8")


def test_build_head_from_config():
    cfg = Config()
    cfg.model.embedding_size = 8
    cfg.head.sample_rate = 0.5
    cfg.head.weight_dtype = cfg.head.momentum_dtype = "bfloat16"
    head = build_head(cfg, num_classes=10, ctx=CPU)
    assert (head.num_local, head.sample_rate, head.weight_dtype) == (10, 0.5, torch.bfloat16)
    assert head.state_bytes() == 10 * 8 * 2 * 2
