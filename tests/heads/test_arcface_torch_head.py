"""arcface_torch's per-rank head checkpoints (checkpoint_gpu_{rank}.pt) as a head start, any rank count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from facescale.config import load_config
from facescale.distributed.class_range import class_range
from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError
from facescale.heads.head_init import init_head_from_arcface_torch
from facescale.heads.margins import arcface
from facescale.heads.partial_fc import PartialFC
from facescale.heads.shard_io import read_arcface_torch_centres

CPU = DistContext.single("cpu")


def write_arcface_torch(directory: Path, centres: torch.Tensor, world: int) -> None:
    """What arcface_torch's train_v2.py saves with save_all_states, one file per rank."""
    directory.mkdir(parents=True, exist_ok=True)
    for rank in range(world):
        r = class_range(centres.shape[0], world, rank)
        torch.save(
            {
                "epoch": 3,
                "global_step": 1200,
                "state_dict_backbone": {"conv1.weight": torch.randn(4, 3, 3, 3)},
                "state_dict_softmax_fc": {"weight": centres[r.start : r.stop].clone()},
                "state_optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
                "state_lr_scheduler": {"last_epoch": 1200, "base_lrs": [0.1]},
            },
            directory / f"checkpoint_gpu_{rank}.pt",
        )


@pytest.mark.parametrize("saved_world", [1, 3, 4])
@pytest.mark.parametrize("our_world", [1, 2, 3])
def test_any_number_of_ranks_reads_into_any_other(tmp_path, saved_world, our_world):
    centres = torch.randn(11, 6)
    write_arcface_torch(tmp_path, centres, saved_world)
    parts = []
    for rank in range(our_world):
        r = class_range(11, our_world, rank)
        rows = read_arcface_torch_centres(tmp_path, 11, 6, r)
        assert rows.shape == (len(r), 6) and rows.dtype == torch.float32
        parts.append(rows)
    torch.testing.assert_close(torch.cat(parts), centres, rtol=0, atol=0)


@pytest.mark.parametrize("update", ["sparse", "dense"])
def test_a_head_starts_from_them_through_set_centres(tmp_path, update):
    centres = torch.randn(12, 6).to(torch.float16)  # arcface_torch fp16 runs keep fp32; any float reads
    write_arcface_torch(tmp_path, centres, 2)
    head = PartialFC(12, 6, arcface(), CPU, update=update, seed=1)
    init_head_from_arcface_torch(head, tmp_path)
    torch.testing.assert_close(head.state_tensors()["weight"], centres.float(), rtol=0, atol=0)
    loss = head(torch.randn(4, 6), torch.tensor([0, 3, 7, 11]))  # trains from there
    assert torch.isfinite(loss)


def test_set_centres_checks_the_shape():
    head = PartialFC(12, 6, arcface(), CPU, seed=1)
    with pytest.raises(FacescaleError, match=r"set_centres.*\[5, 6\].*expected \[12, 6\]"):
        head.set_centres(torch.zeros(5, 6))


def test_wrong_sizes_and_missing_ranks_name_the_file(tmp_path):
    write_arcface_torch(tmp_path / "a", torch.randn(12, 6), 3)
    with pytest.raises(FacescaleError, match=r"checkpoint_gpu_0.pt holds a head weight of shape \[4, 6\]"):
        read_arcface_torch_centres(tmp_path / "a", 13, 6, class_range(13, 1, 0))
    with pytest.raises(FacescaleError, match=r"embedding size 8"):
        read_arcface_torch_centres(tmp_path / "a", 12, 8, class_range(12, 1, 0))
    (tmp_path / "a" / "checkpoint_gpu_1.pt").unlink()
    with pytest.raises(FacescaleError, match=r"lacks ranks \[1\]"):
        read_arcface_torch_centres(tmp_path / "a", 12, 6, class_range(12, 1, 0))
    (tmp_path / "b").mkdir()
    torch.save({"state_dict_backbone": {}}, tmp_path / "b" / "checkpoint_gpu_0.pt")
    with pytest.raises(FacescaleError, match=r"state_dict_softmax_fc"):
        read_arcface_torch_centres(tmp_path / "b", 12, 6, class_range(12, 1, 0))
    with pytest.raises(FacescaleError, match=r"no arcface_torch head files"):
        read_arcface_torch_centres(tmp_path, 12, 6, class_range(12, 1, 0))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_loaded_with_weights_only(tmp_path):
    """A checkpoint that needs code to unpickle is refused, not run."""
    (tmp_path / "c").mkdir()
    torch.save(
        {"state_dict_softmax_fc": {"weight": torch.zeros(3, 2)}, "x": RunsCode()},
        tmp_path / "c" / "checkpoint_gpu_0.pt",
    )
    with pytest.raises(FacescaleError, match=r"cannot read arcface_torch checkpoint .*checkpoint_gpu_0.pt"):
        read_arcface_torch_centres(tmp_path / "c", 3, 2, class_range(3, 1, 0))


def test_training_starts_from_head_init_weights(color_rec, tmp_path):
    from facescale.heads.shard_io import read_checkpoint
    from facescale.train.trainer import train

    centres = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    write_arcface_torch(tmp_path / "arcface_torch", centres, 3)
    cfg = load_config(
        None,
        [
            f"data.root={color_rec}", "data.batch_size=8", "data.num_workers=0", "model.name=mbf_tiny",
            "model.embedding_size=16", "optim.lr=1e-9", "optim.weight_decay=0", "train.max_steps=1",
            "train.tensorboard=false", "train.progress=false", f"train.output={tmp_path / 'run'}",
            f"head.init_weights={tmp_path / 'arcface_torch'}",
        ],
    )  # fmt: skip
    train(cfg, CPU)
    shards = sorted((tmp_path / "run").rglob("head-rank00000-of-00001.pt"))
    assert shards, "no head shard saved"
    ((_, _, tensors),) = read_checkpoint(shards[-1].parent)
    torch.testing.assert_close(tensors["weight"].float(), centres, rtol=0, atol=1e-6)
