"""What users depend on in the head, pinned: fresh negatives every step, arcface_torch's sample size,
finite margins at the ends of the cosine range."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facescale.distributed.context import DistContext
from facescale.heads.margins import CombinedMargin, arcface, combined, cosface
from facescale.heads.partial_fc import PartialFC
from facescale.heads.sampling import num_sampled

CPU = DistContext.single("cpu")


def test_negatives_change_from_step_to_step():
    """Partial FC at rate < 1 draws new negatives each step (a fixed draw trains a fixed subset)."""
    head = PartialFC(40, 8, arcface(), CPU, sample_rate=0.25, seed=5)
    labels = torch.tensor([1, 2, 3])  # the same positives every step
    negatives = []
    for _ in range(5):
        loss = head(torch.randn(3, 8), labels)
        loss.backward()
        sample = head.last_sample
        assert sample is not None
        index = set(sample.index.tolist())
        assert {1, 2, 3} <= index and len(index) == 10  # int(0.25 * 40) rows, positives included
        negatives.append(frozenset(index - {1, 2, 3}))
        head.step(0.1)
    assert len(set(negatives)) == 5, "the same negatives were drawn twice in five steps"


@pytest.mark.parametrize(
    "rate, n, expected",
    [
        (0.3, 9, 2),  # 2.6999999999999997: truncated, not rounded (3) or ceiled (3)
        (0.29, 100, 28),  # 28.999999999999996 -> 28, as arcface_torch's int(rate * n)
        (0.1, 25, 2),  # 2.5 -> 2
        (0.7, 10, 7),  # 7.000000000000001 -> 7, not 8 (ceil)
        (0.1, 1_000_000, 100_000),
        (1.0, 7, 7),
        (0.0, 7, 0),
    ],
)
def test_sampled_count_is_arcface_torchs_int_of_rate_times_n(rate, n, expected):
    assert num_sampled(rate, n) == expected


def test_the_head_keeps_exactly_the_sampled_count():
    head = PartialFC(9, 4, arcface(), CPU, sample_rate=0.3, seed=0)
    head(torch.randn(2, 4), torch.tensor([5, 5]))
    assert head.last_sample is not None and len(head.last_sample.index) == 2


MARGINS = {
    "arcface": arcface(),
    "arcface_torch_gradient": arcface(exact_gradient=False),
    "cosface": cosface(),
    "combined": combined(m1=1.2, m2=0.3, m3=0.1),
    "sphereface_like": CombinedMargin(m1=1.35, m2=0.0, m3=0.0),
}


@pytest.mark.parametrize("name", sorted(MARGINS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_margins_at_cosine_exactly_plus_and_minus_one_are_finite(name, dtype):
    margin = MARGINS[name]
    # targets at cos = +1 and -1 exactly, other columns at the ends too
    cosine = torch.tensor(
        [[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]], dtype=dtype
    ).requires_grad_()
    labels = torch.tensor([0, 0, 2, 1])
    logits = margin(cosine, labels)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert cosine.grad is not None and torch.isfinite(cosine.grad).all()
