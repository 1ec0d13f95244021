"""Two gloo processes on CPU: collectives against single-process references written here."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facescale.distributed.class_range import class_range
from facescale.distributed.collectives import all_gather_with_grad, sharded_cross_entropy
from facescale.distributed.context import DistContext, context_from_environ
from facescale.distributed.local_launch import run_local_processes
from facescale.errors import FacescaleError

WORLD = 2


def _error_message(fn) -> str | None:
    try:
        fn()
    except FacescaleError as e:
        return str(e)
    return None


def _naive_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(len(labels))
    return (torch.log(torch.exp(logits).sum(dim=1)) - logits[rows, labels]).mean()


def _sharded_ce_case(ctx: DistContext, num_classes: int, owner_columns: list[tuple[int, int]]) -> dict:
    gen = torch.Generator().manual_seed(7)
    batch = 6
    logits = torch.randn(batch, num_classes, generator=gen, dtype=torch.float64) * 5
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    start, stop = owner_columns[ctx.rank]
    local = logits[:, start:stop].clone().requires_grad_()
    here = (labels >= start) & (labels < stop)
    remapped = torch.where(here, labels - start, torch.full_like(labels, -1))
    loss = sharded_cross_entropy(local, remapped, ctx)
    loss.backward()
    reference = logits.clone().requires_grad_()
    ref_loss = _naive_cross_entropy(reference, labels)
    ref_loss.backward()
    return {
        "loss_err": abs(loss.item() - ref_loss.item()),
        "grad_err": float((local.grad - reference.grad[:, start:stop]).abs().max()) if stop > start else 0.0,
        "torch_err": abs(ref_loss.item() - F.cross_entropy(logits, labels).item()),
    }


def _worker(environ: dict[str, str]) -> dict:
    ctx = context_from_environ(environ, "cpu", timeout_s=60)
    out: dict = {"rank": ctx.rank, "backend": ctx.backend}
    out["agree_msg"] = _error_message(lambda: ctx.agree("the batch size", 32 + ctx.rank))
    ctx.agree("the class count", 10)  # equal values: no error
    out["fail_msg"] = _error_message(lambda: ctx.fail_together("disk full" if ctx.rank == 1 else None))
    out["broadcast"] = ctx.broadcast_object({"from": ctx.rank}, src=1)

    # all-gather with gradient: each rank's loss weighs the gathered rows differently.
    x = (torch.arange(6, dtype=torch.float64).reshape(2, 3) + 10 * ctx.rank).requires_grad_()
    gathered = all_gather_with_grad(x, ctx)
    weights = [torch.linspace(1, 4, 12, dtype=torch.float64).reshape(4, 3) * (q + 1) for q in range(WORLD)]
    (gathered * weights[ctx.rank]).sum().backward()
    expected_grad = sum(w[2 * ctx.rank : 2 * ctx.rank + 2] for w in weights)
    out["gather_value_err"] = float(
        (gathered.detach() - torch.cat([torch.arange(6.0).reshape(2, 3) + 10 * q for q in range(WORLD)]))
        .abs()
        .max()
    )
    out["gather_grad_err"] = float((x.grad - expected_grad).abs().max())

    # sharded cross-entropy: uneven split, and a split where rank 1 holds no column at all.
    r0, r1 = class_range(7, WORLD, 0), class_range(7, WORLD, 1)
    out["ce_even"] = _sharded_ce_case(ctx, 7, [(r0.start, r0.stop), (r1.start, r1.stop)])
    out["ce_empty"] = _sharded_ce_case(ctx, 5, [(0, 5), (5, 5)])

    # DDP with exact (summed) gradients equals one process over the global batch.
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    reference = nn.Linear(3, 1, bias=False).double()
    reference.load_state_dict(model.state_dict())
    data = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ddp = ctx.wrap_data_parallel(model, exact_gradients=True)
    local = data[2 * ctx.rank : 2 * ctx.rank + 2]
    (ddp(local).pow(2).sum() / 4).backward()
    (reference(data).pow(2).sum() / 4).backward()
    out["ddp_grad_err"] = float((model.weight.grad - reference.weight.grad).abs().max())
    ctx.shutdown()
    return out


@pytest.fixture(scope="module")
def results():
    return run_local_processes(_worker, WORLD, timeout_s=90)


def test_backend_is_gloo_on_cpu(results):
    assert [r["backend"] for r in results] == ["gloo", "gloo"]


def test_disagreement_raises_on_every_rank_naming_each_value(results):
    for r in results:
        assert r["agree_msg"] == "the processes disagree on the batch size (rank 0: 32, rank 1: 33)"


def test_one_rank_failure_is_raised_everywhere(results):
    assert [r["fail_msg"] for r in results] == ["rank 1: disk full"] * WORLD


def test_broadcast_object(results):
    assert [r["broadcast"] for r in results] == [{"from": 1}] * WORLD


def test_all_gather_value_and_reduce_scatter_gradient(results):
    for r in results:
        assert r["gather_value_err"] == 0.0
        assert r["gather_grad_err"] < 1e-12


@pytest.mark.parametrize("case", ["ce_even", "ce_empty"])
def test_sharded_cross_entropy_equals_full_softmax(results, case):
    for r in results:
        assert r[case]["torch_err"] < 1e-12  # the naive reference itself is right
        assert r[case]["loss_err"] < 1e-12
        assert r[case]["grad_err"] < 1e-12


def test_ddp_exact_gradients_match_the_global_batch(results):
    for r in results:
        assert r["ddp_grad_err"] < 1e-12
