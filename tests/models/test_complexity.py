"""MAC and parameter counts: against hand-computed references and the published figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from facescale.models.complexity import count_macs, count_parameters, measure_backbone

# Published multiply-accumulates at 112x112 (insightface arcface_torch model zoo / DESIGN.md).
PUBLISHED_GMACS = {
    "r18": 2.6,
    "r50": 6.3,
    "r100": 12.1,
    "r200": 23.5,
    "mbf": 0.45,
    "vit_t": 1.5,
    "vit_s": 5.7,
    "vit_b": 11.4,
    "vit_l": 25.3,
}


@pytest.mark.parametrize(("name", "gmacs"), PUBLISHED_GMACS.items())
def test_macs_match_published_figures_within_3_percent(name: str, gmacs: float) -> None:
    measured = measure_backbone(name).gmacs
    assert abs(measured - gmacs) / gmacs < 0.03, f"{name}: measured {measured:.3f} G, published {gmacs} G"


def test_count_macs_against_hand_computed_layers() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8 x 56 x 56 outputs, 27 MACs each
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 9 MACs per output
        nn.Flatten(),
        nn.Linear(8 * 56 * 56, 10),
    )
    expected = 8 * 56 * 56 * 27 + 8 * 56 * 56 * 9 + 8 * 56 * 56 * 10
    assert count_macs(model) == expected
    with torch.device("meta"):
        assert count_macs(model.to("meta")) == expected


def test_attention_is_counted() -> None:
    # One ViT block without attention would undercount vit_l by ~3%: check the q.k and attn.v terms.
    tiny, small = measure_backbone("vit_t"), measure_backbone("vit_s")
    per_block_attention = 2 * 144 * 144 * 256
    linear_terms = 144 * (3 * 256 * 256 + 256 * 256 + 8 * 256 * 256)
    head = 144 * 3 * 81 * 256 + 144 * 256 * 256 + 256 * 512
    assert tiny.macs == 12 * (per_block_attention + linear_terms) + head
    assert small.macs > tiny.macs


@pytest.mark.parametrize("name", ["r50", "mbf"])
def test_parameter_count_matches_insightface_state_dict(name: str, compat_dir: Path) -> None:
    keys = json.loads((compat_dir / "state_dict_keys.json").read_text())[name]
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    expected = 0
    for key, info in keys.items():
        if not key.endswith(buffers):
            n = 1
            for d in info["shape"]:
                n *= d
            expected += n
    assert measure_backbone(name).params == expected
    with torch.device("meta"):
        assert count_parameters(nn.Linear(10, 3)) == 33
