"""insightface arcface_torch checkpoints load key-for-key and give the same embeddings.

The fixture (``shared/fixtures/insightface_compat``) lists every key and shape of the
reference models and their outputs for deterministic weights rebuilt from the key names.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from facescale.models import BackboneSpec, build_backbone
from facescale.models.loading import infer_spec

MODELS = ["r18", "r34", "r50", "r100", "r200", "mbf", "mbf_large"]


def fixture_weight(key: str, shape: list[int], dtype: str) -> torch.Tensor:
    """The fixture README's recipe, from the key name alone."""
    numel = int(np.prod(shape)) if shape else 1
    if dtype.startswith("int"):
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    s = np.random.RandomState(zlib.crc32(key.encode())).standard_normal(numel)
    if "prelu" in key:
        v = 0.25 + 0.05 * s
    elif key.endswith("running_var"):
        v = 1 + 0.25 * np.abs(s)
    elif key.endswith("running_mean"):
        v = 0.05 * s
    elif len(shape) > 1:
        v = s * np.sqrt(1.0 / (numel // shape[0]))
    elif key.endswith("bias"):
        v = 0.05 * s
    else:
        v = 1 + 0.1 * s
    return torch.from_numpy(v.reshape(shape)).to(getattr(torch, dtype))


@pytest.fixture(scope="module")
def reference(compat_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    keys = json.loads((compat_dir / "state_dict_keys.json").read_text())
    with np.load(compat_dir / "reference_outputs.npz") as npz:
        outputs = {k: npz[k] for k in npz.files}
    return keys, outputs


@pytest.mark.parametrize("name", MODELS)
def test_keys_shapes_and_order_match(name: str, reference: tuple[dict, dict]) -> None:
    keys, _ = reference
    with torch.device("meta"):
        state = build_backbone(name).state_dict()
    assert list(state) == list(keys[name])
    for key, info in keys[name].items():
        assert list(state[key].shape) == info["shape"], key
        assert str(state[key].dtype).removeprefix("torch.") == info["dtype"], key


@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_reference(name: str, reference: tuple[dict, dict]) -> None:
    keys, outputs = reference
    weights = {k: fixture_weight(k, v["shape"], v["dtype"]) for k, v in keys[name].items()}
    with torch.device("meta"):  # no random init: the fixture weights replace every tensor
        model = build_backbone(name).eval()
    model.load_state_dict(weights, strict=True, assign=True)
    with torch.no_grad():
        ours = model(torch.from_numpy(outputs["input"])).double().numpy()
    ref = outputs[name]
    assert ours.shape == ref.shape == (2, 512)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_insightface_file_is_recognised_from_keys_and_shapes(name: str, reference: tuple[dict, dict]) -> None:
    keys, _ = reference
    state = {
        k: torch.empty(v["shape"], dtype=getattr(torch, v["dtype"]), device="meta")
        for k, v in keys[name].items()
    }
    assert infer_spec(state, "backbone.pth") == BackboneSpec(name, {"embedding_size": 512})
