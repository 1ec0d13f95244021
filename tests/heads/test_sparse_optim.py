import pytest
import torch

from facescale.config import OptimConfig
from facescale.heads.sparse_optim import (
    RoundingNoise,
    build_sparse_optimizer,
    round_to_bf16_,
    stochastic_round_bf16,
)
from facescale.optim_factory import build_optimizer


def _run(name: str, steps: int = 4):
    """The sparse row update with every row sampled vs torch's optimizer on the whole matrix."""
    cfg = OptimConfig(name=name, momentum=0.9, weight_decay=0.01, betas=[0.8, 0.95])
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    reference = weight.clone().requires_grad_()
    torch_opt = build_optimizer([reference], cfg, cfg.lr)
    sparse = build_sparse_optimizer(cfg)
    state = {
        spec.name: torch.zeros(
            (5, *spec.per_class_shape), dtype=torch.float64 if spec.kind == "moment" else torch.int32
        )
        for spec in sparse.state_specs(3)
    }
    for step in range(steps):
        grad = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        lr = 0.1 / (step + 1)
        reference.grad = grad.clone()
        for group in torch_opt.param_groups:
            group["lr"] = lr
        torch_opt.step()
        sparse.update(weight, grad, state, lr)
    return weight, reference.detach()


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_all_rows_sampled_equals_torch_optimizer(name):
    weight, reference = _run(name)
    torch.testing.assert_close(weight, reference, atol=1e-12, rtol=1e-12)


def test_adamw_bias_correction_counts_each_rows_own_steps():
    cfg = OptimConfig(name="adamw", weight_decay=0.0)
    opt = build_sparse_optimizer(cfg)
    weight = torch.zeros(2, 1, dtype=torch.float64)
    state = {
        "exp_avg": torch.zeros(2, 1, dtype=torch.float64),
        "exp_avg_sq": torch.zeros(2, 1, dtype=torch.float64),
        "step": torch.tensor([0, 7], dtype=torch.int32),
    }
    opt.update(weight, torch.ones(2, 1, dtype=torch.float64), state, lr=1.0)
    # A row on its first step moves by lr (Adam's first step is lr * sign(grad)); the other has older state.
    assert abs(float(weight[0, 0]) + 1.0) < 1e-6
    assert 0.3 < -float(weight[1, 0]) < 0.6  # bias corrections of step 8 on fresh moments: about 0.49
    assert state["step"].tolist() == [1, 8]


def test_stochastic_rounding_to_bf16_is_unbiased_and_brackets_the_value():
    values = torch.tensor([1.0 + 2**-10, -3.3e-3, 0.1, 1.0], dtype=torch.float32)
    samples = torch.stack(
        [stochastic_round_bf16(values, torch.Generator().manual_seed(s)).float() for s in range(2000)]
    )
    lower = values.to(torch.bfloat16).float()  # for these values bf16 casting may round either way
    spacing = values.abs() * 2**-7
    assert bool(((samples - values).abs() <= spacing).all())  # always one of the two neighbours
    assert bool(((samples.mean(0) - values).abs() < spacing / 20).all())  # unbiased on average
    assert bool((samples[:, 3] == 1.0).all())  # representable values are kept exactly
    assert not torch.equal(samples.mean(0), lower)  # unlike round-to-nearest


def test_noise_table_rounding_is_unbiased_brackets_and_is_reproducible():
    values = torch.tensor([1.0 + 2**-10, -3.3e-3, 0.1, 1.0], dtype=torch.float32)
    noise = RoundingNoise(seed=0, device=torch.device("cpu"), size=4096)
    samples = torch.stack([round_to_bf16_(values.clone(), noise) for _ in range(2000)])
    spacing = values.abs() * 2**-7
    assert bool(((samples - values).abs() <= spacing).all())
    assert bool(((samples.mean(0) - values).abs() < spacing / 20).all())
    assert bool((samples[:, 3] == 1.0).all())
    assert torch.equal(samples.to(torch.bfloat16).float(), samples)  # the cast afterwards is exact
    again = RoundingNoise(seed=0, device=torch.device("cpu"), size=4096)
    assert torch.equal(round_to_bf16_(values.clone(), again), samples[0])


def test_a_block_larger_than_the_noise_table_still_rounds_without_bias():
    noise = RoundingNoise(seed=1, device=torch.device("cpu"), size=1024)
    values = torch.full((10_000,), 1.0 + 2**-9)  # halfway between two bf16 neighbours of 1
    rounded = round_to_bf16_(values.clone(), noise)
    assert set(rounded.unique().tolist()) == {1.0, 1.0 + 2**-7}
    assert abs(float(rounded.mean()) - (1.0 + 2**-9)) < 2**-7 / 20
