"""load_backbone / load_initial_weights over every accepted source, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from facescale.errors import FacescaleError
from facescale.models import BACKBONES, BackboneSpec, build_backbone, loading
from facescale.models.loading import load_backbone, load_initial_weights, save_safetensors


def images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 112, 112, generator=torch.Generator().manual_seed(3)) * 2 - 1


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    """An mbf_tiny with 128-d output and non-trivial BN statistics."""
    torch.manual_seed(0)
    model = build_backbone("mbf_tiny", embedding_size=128, dropout=0.2)
    model.train()(images(4))
    return model.eval()


def assert_same_model(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(images()), original(images()), rtol=0, atol=0)


def test_insightface_plain_state_dict_infers_name_and_embedding_size(tmp_path: Path, trained) -> None:
    path = tmp_path / "backbone.pth"
    torch.save(trained.state_dict(), path)
    model, spec = load_backbone(path)
    assert spec == BackboneSpec("mbf_tiny", {"embedding_size": 128})
    assert_same_model(model, trained)


def test_ddp_prefix_is_stripped_and_name_can_be_given(tmp_path: Path, trained) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, path)
    model, spec = load_backbone(path, name="mbf_tiny")
    assert spec.name == "mbf_tiny"
    assert_same_model(model, trained)


def test_run_directory_with_backbone_json(tmp_path: Path, trained) -> None:
    torch.save(trained.state_dict(), tmp_path / "backbone.pth")
    spec = {"name": "mbf_tiny", "kwargs": {"embedding_size": 128, "dropout": 0.2}}
    (tmp_path / "backbone.json").write_text(json.dumps(spec))
    model, got = load_backbone(tmp_path)
    assert got.to_dict() == spec
    assert model.features.dropout.p == 0.2
    assert_same_model(model, trained)


def test_run_directory_falls_back_to_latest_checkpoint(tmp_path: Path, trained) -> None:
    step = tmp_path / "checkpoints" / "step-00000200"
    step.mkdir(parents=True)
    spec = {"name": "mbf_tiny", "kwargs": {"embedding_size": 128, "grad_checkpoint": True}}
    state = {"backbone": trained.state_dict(), "backbone_spec": spec, "step": 200, "config": {"a": 1}}
    torch.save(state, step / "trainer.pt")
    (tmp_path / "checkpoints" / "latest").write_text("step-00000200\n")
    model, got = load_backbone(tmp_path)
    assert got.kwargs == {"embedding_size": 128}  # runtime-only options are dropped for inference
    assert_same_model(model, trained)
    model, _ = load_backbone(step / "trainer.pt")  # the checkpoint file on its own
    assert_same_model(model, trained)
    with pytest.raises(FacescaleError, match="holds backbone 'mbf_tiny', not the requested 'mbf'"):
        load_backbone(tmp_path, name="mbf")


def test_safetensors_with_spec_metadata_and_without(tmp_path: Path, trained) -> None:
    path = save_safetensors(
        trained, BackboneSpec("mbf_tiny", {"embedding_size": 128}), tmp_path / "m.safetensors"
    )
    model, spec = load_backbone(path)
    assert spec.name == "mbf_tiny"
    assert_same_model(model, trained)
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(bare))
    model, spec = load_backbone(bare)
    assert spec == BackboneSpec("mbf_tiny", {"embedding_size": 128})
    assert_same_model(model, trained)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_load_initial_weights_is_strict_and_names_bad_keys(tmp_path: Path, trained) -> None:
    path = tmp_path / "backbone.pth"
    torch.save(trained.state_dict(), path)
    target = build_backbone("mbf_tiny", embedding_size=128, grad_checkpoint=True)
    load_initial_weights(target, path)
    assert_same_model(target.eval(), trained)
    wrong_size = build_backbone("mbf_tiny", embedding_size=64)
    with pytest.raises(
        FacescaleError, match=r"backbone\.pth.*features\.layers\.2\.weight: file \(128, 512\)"
    ):
        load_initial_weights(wrong_size, path)


def test_missing_and_mismatched_files_name_the_file_and_keys(tmp_path: Path, trained) -> None:
    with pytest.raises(FacescaleError, match=r"nothing\.pth does not exist"):
        load_backbone(tmp_path / "nothing.pth")
    with pytest.raises(FacescaleError, match=r"neither backbone\.pth nor checkpoints/latest"):
        load_backbone(tmp_path)
    state = trained.state_dict()
    del state["conv_sep.layers.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(FacescaleError, match=r"broken\.pth.*closest: mbf_tiny \(2 keys differ\)"):
        load_backbone(path)
    with pytest.raises(
        FacescaleError, match=r"broken\.pth does not fit.*missing conv_sep\.layers\.0\.weight"
    ):
        load_backbone(path, name="mbf_tiny")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FacescaleError, match=r"cannot read .*garbage\.pth"):
        load_backbone(tmp_path / "garbage.pth")


class Payload:
    """A class a weights_only load must refuse to construct."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"backbone": Payload()}, path)
    with pytest.raises(FacescaleError, match=r"evil\.pth"):
        load_backbone(path)


def test_ambiguous_weights_list_the_candidates(tmp_path: Path, trained, monkeypatch) -> None:
    monkeypatch.setitem(BACKBONES._entries, "mbf_tiny_twin", BACKBONES.get("mbf_tiny"))
    loading._signature.cache_clear()
    path = tmp_path / "backbone.pth"
    torch.save(trained.state_dict(), path)
    with pytest.raises(FacescaleError, match=r"several backbones.*mbf_tiny, mbf_tiny_twin"):
        load_backbone(path)
    loading._signature.cache_clear()
