"""Backbone options: each does what it says, compared with the same model without it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from facescale.config import ModelConfig
from facescale.errors import ConfigError
from facescale.models import backbone_from_config, build_backbone, spec_from_config
from facescale.models.vit import NUM_PATCHES, DropPath


def images(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, 112, 112, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_unknown_option_names_it() -> None:
    with pytest.raises(ConfigError, match="mask_ratio"):
        build_backbone("r50", mask_ratio=0.1)
    with pytest.raises(ConfigError, match="did you mean r50"):
        build_backbone("r5")


def test_config_option_a_family_lacks_raises_unless_default() -> None:
    with pytest.raises(ConfigError, match=r"model\.mask_ratio=0\.2"):
        backbone_from_config(ModelConfig(name="mbf_tiny", mask_ratio=0.2))
    with pytest.raises(ConfigError, match=r"model\.drop_path_rate"):
        backbone_from_config(ModelConfig(name="mbf_tiny", drop_path_rate=0.1))
    vit = backbone_from_config(
        ModelConfig(name="vit_t", drop_path_rate=0.1, mask_ratio=0.3, embedding_size=64)
    )
    assert vit.mask_ratio == 0.3 and vit.blocks[-1].drop_path.p == pytest.approx(0.1)
    assert vit.blocks[0].drop_path.p == 0.0
    with pytest.raises(ConfigError, match="amp_body"):
        build_backbone("mbf_tiny", amp_body="fp8")


def test_spec_from_config_keeps_architecture_options_only() -> None:
    spec = spec_from_config(
        ModelConfig(name="vit_t", embedding_size=256, grad_checkpoint=True, channels_last=True)
    )
    assert spec.name == "vit_t"
    assert spec.kwargs["embedding_size"] == 256
    assert "grad_checkpoint" not in spec.kwargs and "channels_last" not in spec.kwargs


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("mbf_tiny", {}), ("vit_t", {"drop_path_rate": 0.2, "mask_ratio": 0.25, "dropout": 0.1})],
)
def test_grad_checkpoint_gives_the_same_grads_and_bn_statistics(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    plain = build_backbone(name, embedding_size=32, **kwargs).train()
    ckpt = copy.deepcopy(plain)
    ckpt.grad_checkpoint = True
    calls = []
    first_block = ckpt.layers[2] if name == "mbf_tiny" else ckpt.blocks[0]
    first_block.register_forward_pre_hook(lambda *_: calls.append(1))
    x = images()
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(1)  # same masks, drop paths and dropout in both runs
        model(x).square().sum().backward()
        results.append(
            ({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}, model)
        )
    assert len(calls) == 2  # forward + recomputation in backward: checkpointing really happened
    (g_plain, m_plain), (g_ckpt, m_ckpt) = results
    assert g_plain.keys() == g_ckpt.keys()
    for k in g_plain:
        torch.testing.assert_close(g_ckpt[k], g_plain[k], rtol=1e-4, atol=1e-5, msg=k)
    for k, v in bn_buffers(m_plain).items():  # recomputation must not update running stats twice
        torch.testing.assert_close(bn_buffers(m_ckpt)[k], v, rtol=0, atol=0, msg=k)


def test_grad_checkpoint_is_off_in_eval_and_without_grad() -> None:
    model = build_backbone("mbf_tiny", grad_checkpoint=True)
    assert model.train().checkpointing()
    assert not model.eval().checkpointing()
    with torch.no_grad():
        assert not model.train().checkpointing()


def test_channels_last_same_outputs_nhwc_weights() -> None:
    torch.manual_seed(0)
    plain = build_backbone("mbf_tiny", embedding_size=32).eval()
    nhwc = build_backbone("mbf_tiny", embedding_size=32, channels_last=True)
    nhwc.load_state_dict(plain.state_dict())
    conv = nhwc.layers[0].layers[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(nhwc.eval()(images()), plain(images()), rtol=1e-4, atol=1e-4)


def _record_dtypes(model: nn.Module, body: nn.Module, embedding: nn.Module) -> dict[str, torch.dtype]:
    seen: dict[str, torch.dtype] = {}
    body.register_forward_hook(lambda m, i, o: seen.__setitem__("body", o.dtype))
    embedding.register_forward_pre_hook(lambda m, i: seen.__setitem__("embedding_in", i[0].dtype))
    embedding.register_forward_hook(lambda m, i, o: seen.__setitem__("embedding_out", o.dtype))
    return seen


def test_amp_body_runs_body_in_bf16_and_embedding_in_fp32() -> None:
    model = build_backbone("r18", embedding_size=32, amp_body="bf16").eval()
    seen = _record_dtypes(model, model.layer1[0].conv1, model.fc)
    with torch.no_grad():
        out = model(images(2))
    assert seen == {"body": torch.bfloat16, "embedding_in": torch.float32, "embedding_out": torch.float32}
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ["mbf_tiny", "vit_t"])
def test_outer_autocast_never_reaches_the_embedding_layer(name: str) -> None:
    model = build_backbone(name, embedding_size=32).eval()
    if name == "mbf_tiny":
        body, embedding = model.layers[2], model.features.layers[2]
    else:
        body, embedding = model.blocks[0].mlp.fc1, model.feature[0]
    seen = _record_dtypes(model, body, embedding)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images(2))
    assert seen["body"] == torch.bfloat16
    assert seen["embedding_in"] == seen["embedding_out"] == out.dtype == torch.float32


def test_dropout_zeroes_embedding_inputs_in_training_only() -> None:
    torch.manual_seed(0)
    model = build_backbone("mbf_tiny", embedding_size=32, dropout=0.5)
    inputs = []
    model.features.layers[2].register_forward_pre_hook(lambda m, i: inputs.append(i[0]))
    model.train()(images())
    model.eval()(images())
    zero_train = (inputs[0] == 0).float().mean().item()
    zero_eval = (inputs[1] == 0).float().mean().item()
    assert 0.4 < zero_train < 0.6 and zero_eval < 0.05


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_vit_masks_the_configured_ratio_of_tokens(ratio: float) -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_t", embedding_size=32, mask_ratio=ratio)
    token_counts = []
    model.blocks[0].register_forward_pre_hook(lambda m, i: token_counts.append(i[0].shape[1]))
    x = images(2)
    features = model.train().forward_body(x).reshape(2, NUM_PATCHES, model.dim)
    is_mask_token = (features == model.mask_token.detach()).all(dim=-1)
    assert token_counts[-1] == NUM_PATCHES - round(NUM_PATCHES * ratio)
    assert is_mask_token.sum(dim=1).tolist() == [round(NUM_PATCHES * ratio)] * 2
    assert not torch.equal(is_mask_token[0], is_mask_token[1])  # each image has its own mask
    model.eval()(x)
    assert token_counts[-1] == NUM_PATCHES


def test_drop_path_drops_whole_samples_at_rate_and_rescales() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.3)
    x = torch.ones(20000, 4)
    y = drop.train()(x)
    dropped = (y == 0).all(dim=1)
    assert abs(dropped.float().mean().item() - 0.3) < 0.02
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / 0.7))
    assert torch.equal(drop.eval()(x), x)


def test_torch_compile_captures_a_full_training_graph() -> None:
    # aot_eager traces forward and backward like inductor does but skips code generation, so it
    # checks for graph breaks in seconds on CPU; inductor/cudagraphs speed is checked on a GPU.
    torch.manual_seed(0)
    model = build_backbone("mbf_tiny", embedding_size=16).train()
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    x = images(2)
    out_eager, out_compiled = model(x), compiled(x)
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-4, atol=1e-4)
    out_eager.sum().backward()
    out_compiled.sum().backward()
    for (k, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4, msg=k)
