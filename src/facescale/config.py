"""Typed configuration: dataclass defaults, YAML recipes that override them, dotted overrides.

The dataclasses below are the single source of truth for every option and its default.
A YAML recipe (``configs/*.yaml``) only overrides; ``-o section.key=value`` on the command
line overrides the recipe. Unknown keys and values of the wrong type raise ConfigError
(the CLI exits with code 2) naming the key and suggesting the closest valid ones, because
a silently ignored typo in a training recipe costs a GPU-week.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facescale.errors import ConfigError


@dataclass
class AugmentConfig:
    """Training augmentations; each value is the probability of applying it to an image."""

    hflip: float = 0.5
    downscale: float = 0.0  # shrink to a random 40-90% and back: simulates low-resolution faces
    blur: float = 0.0
    color_jitter: float = 0.0
    grayscale: float = 0.0


@dataclass
class DataConfig:
    """Where the training images come from and how they are loaded."""

    format: str = "recordio"  # recordio | label_txt | image_folder | image_bin (see facescale.data)
    root: str = "data/synthface"  # folder holding train.rec/.idx/property, label.txt, ...
    num_classes: int = 0  # 0: read it from the dataset (property file or the labels)
    batch_size: int = 128  # per process
    num_workers: int = 2
    prefetch: int = 2  # batches kept ready per worker
    bad_data: str = "fail"  # fail: stop naming the record; skip: skip, count and report
    dali: bool = False  # decode with NVIDIA DALI (nvJPEG on the GPU; the dali extra); workers = its threads
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """The backbone: a name from ``facescale models`` and its options."""

    name: str = "r50"
    embedding_size: int = 512
    dropout: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth (ViT)
    mask_ratio: float = 0.0  # training-time random patch masking (ViT)
    grad_checkpoint: bool = False
    channels_last: bool = False
    compile: bool = False  # torch.compile the backbone
    init_weights: str = ""  # an insightface backbone.pth, safetensors or facescale checkpoint


@dataclass
class MarginConfig:
    """Margin on the target logit: ``s * (cos(m1 * theta + m2) - m3)``."""

    name: str = "arcface"  # arcface (1, 0.5, 0) | cosface (1, 0, 0.4) | combined (m1, m2, m3 below)
    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.5
    m3: float = 0.0
    # True: the exact gradient (the paper's). False: arcface_torch's, which applies the angular
    # margin under no_grad and so drops the factor sin(theta + m) / sin(theta).
    exact_gradient: bool = True


@dataclass
class HeadConfig:
    """Partial FC: class centres sharded over processes, a sampled subset used each step."""

    sample_rate: float = 1.0  # 1: plain model parallelism; 0: positives only
    update: str = "sparse"  # sparse: only sampled rows decay and move; dense: arcface_torch semantics
    weight_dtype: str = "float32"  # float32 | bfloat16 | float16 (class centres)
    momentum_dtype: str = "float32"  # float32 | bfloat16 | float16 (their optimizer state)
    offload: bool = False  # keep centres + state in (pinned) host memory; move sampled rows only
    margin: MarginConfig = field(default_factory=MarginConfig)


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (shared by backbone and head)."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # for the global batch given in lr_batch_size (scaled linearly)
    lr_batch_size: int = 0  # 0: lr is used as given, whatever the global batch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_epochs: float = 0.0
    power: float = 2.0  # polynomial decay to 0 over the run
    clip_grad_norm: float = 5.0  # 0 disables


@dataclass
class EvalConfig:
    """Verification sets evaluated during training and by ``facescale eval``."""

    bins: list[str] = field(default_factory=list)  # LFW-style .bin files (paths)
    batch_size: int = 128
    flip: bool = True


@dataclass
class TrainConfig:
    """The loop: length, precision, logging and checkpoint cadence."""

    output: str = "runs/exp"
    epochs: int = 20
    max_steps: int = 0  # 0: run all epochs; >0: stop after this many steps
    seed: int = 2048
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA if supported else fp16; fp32 on CPU) | fp32 | fp16 | bf16
    log_every: int = 50
    eval_every: int = 0  # steps; 0: only at the end
    save_every: int = 1000  # steps; a checkpoint is always written at the end
    keep_checkpoints: int = 2
    progress: bool = True  # a progress bar when stderr is a terminal
    tensorboard: bool = True


@dataclass
class Config:
    """A full training recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("recordio", "label_txt", "image_folder", "image_bin"),
    "data.bad_data": ("fail", "skip"),
    "head.update": ("sparse", "dense"),
    "head.weight_dtype": ("float32", "bfloat16", "float16"),
    "head.momentum_dtype": ("float32", "bfloat16", "float16"),
    "head.margin.name": ("arcface", "cosface", "combined"),
    "optim.name": ("sgd", "adamw"),
    "train.precision": ("auto", "fp32", "fp16", "bf16"),
}


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema, e.g. ``optim.lr``."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(all_keys(tp, f"{prefix}{f.name}."))  # type: ignore[arg-type]
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.5)
    if not close:  # "lr" alone should still suggest optim.lr
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in all_keys() if k.rsplit(".", 1)[-1] == leaf][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints widen to floats, nothing else converts."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key, where)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r} in {where}: {value!r} is not a {tp}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} in {where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        if key in CHOICES and value not in CHOICES[key]:
            close = difflib.get_close_matches(str(value), CHOICES[key], n=2, cutoff=0.3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"config key {key!r} in {where}: {value!r} is not one of {', '.join(CHOICES[key])}{hint}"
            )
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"config key {key!r} in {where}: expected {name}, got {type(value).__name__} {value!r}")


def _apply(obj: Any, updates: dict[str, Any], prefix: str, where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown_key(key, where)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r} in {where}: expected a mapping, got {value!r}")
            _apply(getattr(obj, name), value, f"{key}.", where)
        else:
            setattr(obj, name, _coerce(value, tp, key, where))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} does not parse as YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` -> ``("optim.lr", 0.05)``; the value is read as YAML (``[1, 2]``, ``true``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the recipe at ``path`` (may name ``_base_: other.yaml``), then overrides."""
    cfg = Config()
    if path is not None:
        for layer_path, layer in _recipe_layers(Path(path)):
            _apply(cfg, layer, "", str(layer_path))
    for text in overrides or []:
        key, value = parse_override(text)
        _apply(cfg, nest(key, value), "", f"override {text!r}")
    validate(cfg)
    return cfg


def _recipe_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: _base_ chain loops back on itself")
    data = _read_yaml(path)
    base = data.pop("_base_", None)
    layers: list[tuple[Path, dict[str, Any]]] = []
    if base is not None:
        layers = _recipe_layers(path.parent / str(base), (*seen, path.resolve()))
    return [*layers, (path, data)]


def validate(cfg: Config) -> None:
    """Checks that cross keys or ranges; the message names the key and the value."""
    checks = [
        (cfg.data.batch_size > 0, "data.batch_size", cfg.data.batch_size, "must be > 0"),
        (cfg.data.num_workers >= 0, "data.num_workers", cfg.data.num_workers, "must be >= 0"),
        (cfg.data.num_classes >= 0, "data.num_classes", cfg.data.num_classes, "must be >= 0"),
        (0.0 <= cfg.head.sample_rate <= 1.0, "head.sample_rate", cfg.head.sample_rate, "must be in [0, 1]"),
        (cfg.optim.lr > 0, "optim.lr", cfg.optim.lr, "must be > 0"),
        (cfg.train.epochs > 0 or cfg.train.max_steps > 0, "train.epochs", cfg.train.epochs, "must be > 0"),
        (cfg.model.embedding_size > 0, "model.embedding_size", cfg.model.embedding_size, "must be > 0"),
        (0.0 <= cfg.model.mask_ratio < 1.0, "model.mask_ratio", cfg.model.mask_ratio, "must be in [0, 1)"),
        (len(cfg.optim.betas) == 2, "optim.betas", cfg.optim.betas, "must have two values"),
    ]
    for ok, key, value, why in checks:
        if not ok:
            raise ConfigError(f"config key {key!r}: {value!r} {why}")


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any], where: str = "saved config") -> Config:
    cfg = Config()
    _apply(cfg, data, "", where)
    validate(cfg)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config (every key, defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
