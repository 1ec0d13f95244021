"""The config's choice lists (``config.CHOICES``, next to the schema) are the one list of each kind.

The code that acts on a choice (a registry of builders, a name -> dtype table) must accept
exactly the listed values, so adding a margin, a format or a dtype in one place and not the
other fails here instead of at the start of someone's training run.
"""

from __future__ import annotations

import pytest
import torch

from facescale.config import CHOICES, MARGIN_STANDARD, MARGIN_USES, OptimConfig
from facescale.data.datasets import DATASETS
from facescale.errors import ConfigError
from facescale.heads.centres import DTYPES
from facescale.heads.margins import MARGINS
from facescale.heads.sparse_optim import build_sparse_optimizer
from facescale.optim_factory import build_optimizer
from facescale.train.precision import resolve_precision


def test_registries_hold_exactly_the_listed_names() -> None:
    assert sorted(DATASETS.names()) == sorted(CHOICES["data.format"])
    assert sorted(MARGINS.names()) == sorted(CHOICES["head.margin.name"])
    assert sorted(MARGIN_USES) == sorted(MARGIN_STANDARD) == sorted(CHOICES["head.margin.name"])


def test_dtype_tables_cover_the_listed_names() -> None:
    for key in ("head.weight_dtype", "head.momentum_dtype"):
        assert set(CHOICES[key]) <= set(DTYPES), key  # DTYPES adds float64 for the exactness tests


@pytest.mark.parametrize("name", CHOICES["optim.name"])
def test_both_optimizer_factories_build_every_listed_optimizer(name: str) -> None:
    cfg = OptimConfig(name=name)
    assert build_sparse_optimizer(cfg).name == name
    assert build_optimizer([torch.zeros(2, requires_grad=True)], cfg, 0.1) is not None


def test_an_unlisted_optimizer_is_refused_with_the_list() -> None:
    listed = ", ".join(CHOICES["optim.name"])
    for build in (build_sparse_optimizer, lambda cfg: build_optimizer([], cfg, 0.1)):
        with pytest.raises(ConfigError, match=f"'lamb' is not one of {listed}"):
            build(OptimConfig(name="lamb"))


@pytest.mark.parametrize("name", [c for c in CHOICES["train.precision"] if c != "fp16"])
def test_every_listed_precision_resolves_on_cpu(name: str) -> None:
    precision = resolve_precision(name, torch.device("cpu"))
    assert precision.name in CHOICES["train.precision"]
