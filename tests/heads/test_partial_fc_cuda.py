"""The head on a CUDA device against the same head on the CPU (skipped without CUDA).

Same seed: the same initial centres and the same sampled rows on every device (item 6 of issue
15), float64 results equal to rounding, the lean bf16 and offloaded heads within bf16 noise, and
no host sync in a sparse step but the deferred label check.
"""

import pytest
import torch

from facescale.bench.host_syncs import count_host_syncs
from facescale.config import OptimConfig
from facescale.distributed.context import DistContext
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _run(device: str, steps: int = 3, **kwargs):
    head = PartialFC(
        5000,
        64,
        arcface(),
        DistContext.single(device),
        sample_rate=0.1,
        optim=OptimConfig(),
        seed=4,
        **kwargs,
    )
    gen = torch.Generator().manual_seed(0)
    losses, indices = [], []
    for _ in range(steps):
        embeddings = torch.randn(32, 64, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        labels = torch.randint(0, 5000, (32,), generator=gen).to(device)
        loss = head(embeddings, labels)
        loss.backward()
        indices.append(head.last_sample.index.cpu())
        head.step(0.5)
        losses.append(loss.item())
    return head, losses, indices


def test_float64_head_is_the_same_on_cuda_and_cpu():
    cpu, cpu_losses, cpu_index = _run("cpu", weight_dtype="float64", momentum_dtype="float64")
    gpu, gpu_losses, gpu_index = _run("cuda", weight_dtype="float64", momentum_dtype="float64")
    assert all(torch.equal(a, b) for a, b in zip(cpu_index, gpu_index))
    assert max(abs(a - b) for a, b in zip(cpu_losses, gpu_losses)) < 1e-9
    for name, tensor in cpu.state_tensors().items():
        torch.testing.assert_close(gpu.state_tensors()[name].cpu(), tensor, atol=1e-9, rtol=0)


@pytest.mark.parametrize("offload", [False, True])
def test_lean_head_on_cuda_matches_the_cpu_within_bf16_noise(offload):
    lean = {"weight_dtype": "bfloat16", "momentum_dtype": "bfloat16", "matmul_dtype": "float32"}
    cpu, cpu_losses, cpu_index = _run("cpu", **lean)
    gpu, gpu_losses, gpu_index = _run("cuda", offload=offload, **lean)
    assert all(torch.equal(a, b) for a, b in zip(cpu_index, gpu_index))
    assert max(abs(a - b) for a, b in zip(cpu_losses, gpu_losses)) < 1e-2
    diff = (gpu.state_tensors()["weight"].float().cpu() - cpu.state_tensors()["weight"].float()).abs().max()
    assert float(diff) < 1e-3


def test_a_sparse_step_on_cuda_syncs_once_at_most():
    head = PartialFC(
        100_000, 128, arcface(), DistContext.single("cuda"), sample_rate=0.1, optim=OptimConfig()
    )
    embeddings = torch.randn(64, 128, device="cuda").requires_grad_()
    labels = torch.randint(0, 100_000, (64,), device="cuda")

    def step():
        head(embeddings, labels).backward()
        head.step(0.1)

    step()
    syncs, ops = count_host_syncs(step, torch.device("cuda"))
    assert syncs <= 1, ops
