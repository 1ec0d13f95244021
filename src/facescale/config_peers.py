"""The names arcface_torch and PLSC give to facescale's config keys, for "did you mean" hints.

Users arrive with an arcface_torch ``configs/*.py`` (``config.lr = 0.1``, ``config.fp16 = True``)
or a PLSC YAML (``Global.epochs``, ``FP16.level``, ...). When such a name reaches facescale as an
unknown key (``-o optim.learning_rate=0.1``, ``train.fp16: true``, a whole ``Global:`` section),
the error says which facescale key holds it. docs/migrating.md is the same table for humans;
tests/test_config_keys.py checks that both agree.

Keys map to a facescale key, or to a sentence when facescale has no key for it (the value is
read from the data, or the feature is spelled differently).
"""

from __future__ import annotations

# arcface_torch (insightface/recognition/arcface_torch/configs/base.py and its recipes):
# matched on the last part of the unknown key, so ``config.lr``, ``lr`` and ``optim.learning_rate``
# all find theirs.
ARCFACE_TORCH: dict[str, str] = {
    "lr": "optim.lr",
    "fp16": "train.precision",
    "sample_rate": "head.sample_rate",
    "margin_list": "head.margin.m1, head.margin.m2, head.margin.m3 (with head.margin.name=combined)",
    "num_classes": "data.num_classes",
    "num_image": "nothing: facescale counts the images in data.root",
    "network": "model.name",
    "embedding_size": "model.embedding_size",
    "momentum": "optim.momentum",
    "weight_decay": "optim.weight_decay",
    "batch_size": "data.batch_size",
    "optimizer": "optim.name",
    "num_epoch": "train.epochs",
    "warmup_epoch": "optim.warmup_epochs",
    "val_targets": "eval.bins",
    "rec": "data.root",
    "output": "train.output",
    "verbose": "train.eval_every",
    "frequent": "train.log_every",
    "dali": "data.dali",
    "num_workers": "data.num_workers",
    "seed": "train.seed",
    "resume": "nothing: `facescale train --resume RUN_DIR`",
    "save_all_states": "nothing: facescale always saves the full state",
    "gradient_acc": "nothing: raise data.batch_size or add processes",
    "interclass_filtering_threshold": "nothing: facescale has no inter-class filtering",
    "using_wandb": "train.tensorboard",
}

# PLSC (PaddlePaddle/PLSC task/recognition/face YAML): matched on the whole dotted key.
PLSC: dict[str, str] = {
    "Global.epochs": "train.epochs",
    "Global.output_dir": "train.output",
    "Global.seed": "train.seed",
    "Global.device": "train.device",
    "Global.print_batch_step": "train.log_every",
    "Global.eval_interval": "train.eval_every",
    "Global.save_interval": "train.save_every (in steps)",
    "Global.max_num_latest_checkpoint": "train.keep_checkpoints",
    "Global.pretrained_model": "model.init_weights",
    "Global.checkpoint": "nothing: `facescale train --resume RUN_DIR`",
    "Global.accum_steps": "nothing: raise data.batch_size or add processes",
    "Global.use_visualdl": "train.tensorboard",
    "FP16.level": "train.precision",
    "Model.name": "model.name",
    "Model.num_features": "model.embedding_size",
    "Model.class_num": "data.num_classes",
    "Model.data_format": "model.channels_last",
    "Model.pfc_config.sample_ratio": "head.sample_rate",
    "Model.pfc_config.model_parallel": "nothing: the head is always model-parallel",
    "Loss.Train.MarginLoss.m1": "head.margin.m1",
    "Loss.Train.MarginLoss.m2": "head.margin.m2",
    "Loss.Train.MarginLoss.m3": "head.margin.m3",
    "Loss.Train.MarginLoss.s": "head.margin.s",
    "LRScheduler.warmup_epoch": "optim.warmup_epochs",
    "LRScheduler.name": "nothing: facescale's schedule is polynomial decay (optim.power)",
    "Optimizer.name": "optim.name",
    "Optimizer.momentum": "optim.momentum",
    "Optimizer.weight_decay": "optim.weight_decay",
    "Optimizer.grad_clip": "optim.clip_grad_norm",
    "DataLoader.Train.dataset.image_root": "data.root",
    "DataLoader.Train.dataset.cls_label_path": "data.root (with data.format=label_txt)",
    "DataLoader.Train.sampler.batch_size": "data.batch_size",
    "DataLoader.Train.loader.num_workers": "data.num_workers",
}

# Names of no peer in particular that users type for these keys.
SYNONYMS: dict[str, str] = {
    "learning_rate": "optim.lr",
    "base_lr": "optim.lr",
    "wd": "optim.weight_decay",
    "amp": "train.precision",
    "workers": "data.num_workers",
    "data_dir": "data.root",
    "epoch": "train.epochs",
    "backbone": "model.name",
}

PLSC_SECTIONS = tuple(
    sorted({k.split(".", 1)[0] for k in PLSC} | {"DistributedStrategy", "Metric", "Export"})
)


def peer_hint(key: str) -> str | None:
    """The facescale key (or a sentence) for a peer's name ``key``; None when it is no peer's name.

    ``key`` is the dotted unknown key as facescale saw it (``"optim.learning_rate"``,
    ``"Global.epochs"``, ``"config.fp16"``).
    """
    if key in PLSC:
        return f"{PLSC[key]} (PLSC's {key})"
    if key.split(".", 1)[0] in PLSC_SECTIONS:
        return f"see docs/migrating.md for PLSC's {key.split('.', 1)[0]}.* keys"
    leaf = key.rsplit(".", 1)[-1]
    if leaf in ARCFACE_TORCH:
        return f"{ARCFACE_TORCH[leaf]} (arcface_torch's config.{leaf})"
    return SYNONYMS.get(leaf)
