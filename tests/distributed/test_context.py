import pytest
import torch
from torch import nn

from facescale.distributed.context import DistContext, context_from_environ
from facescale.errors import FacescaleError


def test_single_context_collectives_are_identities():
    ctx = DistContext.single("cpu")
    t = torch.tensor([1.0, 2.0])
    assert ctx.all_reduce_sum(t.clone()).tolist() == [1.0, 2.0]
    assert ctx.all_reduce_mean(t.clone()).tolist() == [1.0, 2.0]
    assert ctx.all_gather(t) is t
    assert ctx.broadcast_object({"a": 1}) == {"a": 1}
    ctx.agree("anything", 3)
    ctx.barrier()
    module = nn.Linear(2, 2)
    assert ctx.wrap_data_parallel(module) is module
    assert ctx.is_main and not ctx.is_distributed


def test_fail_together_raises_in_one_process():
    ctx = DistContext.single("cpu")
    ctx.fail_together(None)
    with pytest.raises(FacescaleError, match="broken"):
        ctx.fail_together("broken")


def test_environ_without_torchrun_variables_is_single_process():
    ctx = context_from_environ({}, "cpu")
    assert (ctx.rank, ctx.world_size, ctx.device.type) == (0, 1, "cpu")


@pytest.mark.parametrize(
    ("environ", "device", "message"),
    [
        ({"WORLD_SIZE": "two"}, "cpu", "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "cpu", r"RANK=2 is outside \[0, WORLD_SIZE=2\)"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "cpu", "MASTER_ADDR and MASTER_PORT is not set"),
        ({}, "tpu", "'tpu' is not cpu, cuda"),
    ],
)
def test_bad_environment_names_the_variable(environ, device, message):
    with pytest.raises(FacescaleError, match=message):
        context_from_environ(environ, device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(FacescaleError, match="sees no CUDA GPU"):
        context_from_environ({}, "cuda")
