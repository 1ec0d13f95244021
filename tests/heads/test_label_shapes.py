"""Labels as arcface_torch passes them ([B, 1]) are read as [B]; any other shape is refused by name."""

from __future__ import annotations

import pytest
import torch

from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC

CPU = DistContext.single("cpu")


def make_head(rate: float) -> PartialFC:
    return PartialFC(
        12, 6, arcface(), CPU, sample_rate=rate, weight_dtype="float64", momentum_dtype="float64", seed=2
    )


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_b_by_1_labels_give_the_same_loss_as_b(rate):
    embeddings = torch.randn(5, 6, dtype=torch.float64)
    labels = torch.tensor([0, 3, 3, 7, 11])
    flat = make_head(rate)(embeddings, labels)
    column = make_head(rate)(embeddings, labels.view(-1, 1))
    assert flat.item() == column.item()


@pytest.mark.parametrize("shape", [(5, 2), (5, 1, 1), (1, 5)])
def test_other_label_shapes_are_refused_saying_b_is_expected(shape):
    labels = torch.zeros(shape, dtype=torch.int64)
    with pytest.raises(
        FacescaleError, match=r"expected \[batch\] class indices, or arcface_torch's \[batch, 1\]"
    ):
        make_head(1.0)(torch.randn(5, 6, dtype=torch.float64), labels)


def test_the_margin_refuses_non_flat_labels_naming_the_shapes():
    with pytest.raises(FacescaleError, match=r"labels of shape \[4, 1\].*expected labels \[4\]"):
        arcface()(torch.rand(4, 10), torch.zeros(4, 1, dtype=torch.int64))
