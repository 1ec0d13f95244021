"""Precision policy (train.precision=auto per GPU generation) and the fp16 overflow skip of the head."""

import pytest
import torch

from facescale.bench.host_syncs import HostSyncCensus
from facescale.config import OptimConfig
from facescale.distributed.context import DistContext
from facescale.errors import ConfigError
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC
from facescale.train.precision import head_update_ok, resolve_precision

CUDA = torch.device("cuda", 0)  # a device object only: resolve_precision asks the capability


GENERATIONS = [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]  # V100 T4 A100 H100


@pytest.mark.parametrize(("capability", "expected"), GENERATIONS)
def test_auto_uses_bf16_only_where_it_is_native(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation says yes on V100
    precision = resolve_precision("auto", CUDA)
    assert precision.name == expected and precision.uses_grad_scaler == (expected == "fp16")


def test_explicit_bf16_below_sm80_warns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.warns(UserWarning, match="compute capability 7.0: bf16 is emulated"):
        assert resolve_precision("bf16", CUDA).name == "bf16"
    assert resolve_precision("auto", torch.device("cpu")).name == "fp32"
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))


def _step(init_scale: float):
    """One trainer-style step: backbone (linear) -> head on detached fp32 features -> scaled backbone grad."""
    torch.manual_seed(0)
    backbone = torch.nn.Linear(8, 8)
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    head = PartialFC(
        20, 8, arcface(), DistContext.single("cpu"), sample_rate=0.5, optim=OptimConfig(), seed=1
    )
    before = {k: v.clone() for k, v in head.state_tensors().items()}
    weight_before = backbone.weight.detach().clone()
    embeddings = backbone(torch.randn(6, 8))
    features = embeddings.detach().float().requires_grad_()
    head(features, torch.arange(6)).backward()
    embeddings.backward(scaler.scale(features.grad))
    scaler.step(optimizer)
    with HostSyncCensus() as census:
        ok = head_update_ok(scaler, optimizer, features)
    scaler.update()
    head.step(0.5, apply=ok)
    changed = any(not torch.equal(before[k], v) for k, v in head.state_tensors().items())
    return ok, changed, not torch.equal(weight_before, backbone.weight), census.count


def test_an_overflow_step_skips_the_head_as_the_scaler_skips_the_backbone():
    ok, head_changed, backbone_changed, syncs = _step(init_scale=2.0**127)  # the scaled grads overflow
    assert not bool(ok) and not head_changed and not backbone_changed and syncs == 0
    ok, head_changed, backbone_changed, _ = _step(init_scale=1.0)
    assert bool(ok) and head_changed and backbone_changed


def test_non_finite_embeddings_never_reach_the_centres():
    head = PartialFC(20, 8, arcface(), DistContext.single("cpu"), sample_rate=0.5, optim=OptimConfig())
    before = head.state_tensors()["weight"].clone()
    features = torch.randn(4, 8)
    features[1, 3] = float("inf")
    features.requires_grad_()
    head(features, torch.arange(4)).backward()
    ok = torch.isfinite(features).all() & torch.isfinite(features.grad).all()
    head.step(0.5, apply=ok)
    assert torch.equal(head.state_tensors()["weight"], before)
