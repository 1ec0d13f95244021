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
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facescale.config_peers import peer_hint
from facescale.config_yaml import load_yaml, one_line, read_recipe, short_repr
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
    max_pixels: int = 8192 * 8192  # images above this are refused from their header (0: no cap)
    sparse_labels: bool = False  # accept labels with gaps (classes without images) instead of failing
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

    name: str = "arcface"  # arcface (1, m2, 0) | cosface (1, 0, m3) | combined (m1, m2, m3)
    s: float = 64.0
    # None: the named margin's standard value (arcface m2 = 0.5, cosface m3 = 0.4, combined 1, 0.5, 0).
    # A named margin takes the one it uses (arcface m2, cosface m3); a value it has no use for is
    # refused at load time (see margin_params). Filled in with the values used once loaded.
    m1: float | None = None
    m2: float | None = None
    m3: float | None = None
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
    init_weights: str = ""  # a folder of arcface_torch checkpoint_gpu_{rank}.pt: start the centres there
    matmul_dtype: str = "auto"  # the head's GEMMs: auto | float32 | tf32 | bfloat16 | float16 (fp32 logits)
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
    "head.matmul_dtype": ("auto", "float32", "tf32", "bfloat16", "float16"),
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


def _suggest(key: str) -> str:
    """``"; did you mean X?"`` for unknown ``key`` (a peer's name first, then the closest spelling)."""
    peer = peer_hint(key)
    if peer is not None:
        return f"; did you mean {peer}?"
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.5)
    if not close:  # "lr" alone should still suggest optim.lr
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in all_keys() if k.rsplit(".", 1)[-1] == leaf][:3]
    return f"; did you mean {', '.join(close)}?" if close else ""


def _leaves(value: Any, prefix: str) -> list[str]:
    """Dotted leaf keys under an unknown mapping (a PLSC ``Global:`` section), lists of mappings included."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{prefix}.{k}")]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [leaf for v in value for leaf in _leaves(v, prefix)]
    return [prefix]


def _unknown_keys(unknown: dict[str, Any], where: str) -> ConfigError:
    """One error for all unknown keys of a mapping ({dotted key: value}), each with its hint."""
    leaves = [leaf for key, value in unknown.items() for leaf in _leaves(value, key)][:12]
    if len(leaves) == 1:
        return ConfigError(f"unknown config key {leaves[0]!r} in {where}{_suggest(leaves[0])}")
    lines = "; ".join(f"{leaf!r}{_suggest(leaf)}" for leaf in leaves)
    return ConfigError(f"unknown config keys in {where} (see docs/migrating.md): {lines}")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints widen to floats and whole floats (``1e5``)
    narrow to ints, nothing else converts."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key, where)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r} in {where}: {short_repr(value)} is not a {tp}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} in {where}: expected a list, got {short_repr(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # -o train.max_steps=1e5: a whole number in float notation
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
    raise ConfigError(
        f"config key {key!r} in {where}: expected {name}, got {type(value).__name__} {short_repr(value)}"
    )


def _apply(obj: Any, updates: dict[str, Any], prefix: str, where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = {f"{prefix}{name}": value for name, value in updates.items() if name not in names}
    if unknown:  # all of them at once: a peer's recipe has many, each with its facescale key
        raise _unknown_keys(unknown, where)
    for name, value in updates.items():
        key = f"{prefix}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key {key!r} in {where}: expected a mapping, got {short_repr(value)}"
                )
            _apply(getattr(obj, name), value, f"{key}.", where)
        else:
            setattr(obj, name, _coerce(value, tp, key, where))


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` -> ``("optim.lr", 0.05)``; the value is read as YAML (``[1, 2]``, ``true``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        if "twice" in str(e) or "aliases" in str(e):
            raise ConfigError(f"override {text!r}: {one_line(e)}") from None
        value = raw  # a plain string such as runs/my:exp
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
        _apply(cfg, nest(key, value), "", f"override {short_repr(text)}")
    validate(cfg)
    return resolve(cfg)


MAX_BASE_DEPTH = 16  # recipes layer two or three deep; a longer chain is a mistake


def _recipe_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: _base_ chain loops back on itself")
    if len(seen) >= MAX_BASE_DEPTH:
        raise ConfigError(
            f"config {path}: _base_ chain is more than {MAX_BASE_DEPTH} files deep (from {seen[0]})"
        )
    data = read_recipe(path)
    base = data.pop("_base_", None)
    layers: list[tuple[Path, dict[str, Any]]] = []
    if base is not None:
        layers = _recipe_layers(path.parent / str(base), (*seen, path.resolve()))
    return [*layers, (path, data)]


# The margin parameters each named margin takes from the config, and the standard values
# (m1, m2, m3) it starts from: arcface = (1, m2, 0), cosface = (1, 0, m3).
MARGIN_USES: dict[str, tuple[str, ...]] = {
    "arcface": ("m2",),
    "cosface": ("m3",),
    "combined": ("m1", "m2", "m3"),
}
MARGIN_STANDARD: dict[str, tuple[float, float, float]] = {
    "arcface": (1.0, 0.5, 0.0),
    "cosface": (1.0, 0.0, 0.4),
    "combined": (1.0, 0.5, 0.0),
}


def margin_params(cfg: MarginConfig) -> tuple[float, float, float]:
    """(m1, m2, m3) of the margin ``cfg`` names: the values given where it uses them, else the standard.

    A value the named margin has no use for (``m3`` for arcface, ``m2`` for cosface, ``m1`` for
    either) is a ConfigError naming the key unless it equals the margin's own (1, 0 or 0), so a
    resolved config loads again and ``-o head.margin.m3=0.35`` on an ArcFace recipe is not lost.
    """
    if cfg.name not in MARGIN_STANDARD:
        raise ConfigError(
            f"config key 'head.margin.name': {cfg.name!r} is not one of {', '.join(MARGIN_STANDARD)}"
        )
    uses = MARGIN_USES[cfg.name]
    values = []
    for key, standard in zip(("m1", "m2", "m3"), MARGIN_STANDARD[cfg.name], strict=True):
        given = getattr(cfg, key)
        if given is not None and key not in uses and given != standard:
            takes = " and ".join(f"head.margin.{k}" for k in uses)
            raise ConfigError(
                f"config key 'head.margin.{key}': {given!r} is not used by the {cfg.name} margin "
                f"(it takes {takes}); set head.margin.name=combined to use m1, m2 and m3 together"
            )
        values.append(standard if given is None else float(given))
    m1, m2, m3 = values
    if not m1 > 0:
        raise ConfigError(f"config key 'head.margin.m1': {m1!r} must be > 0")
    if not 0 <= m2 < math.pi:
        raise ConfigError(f"config key 'head.margin.m2': {m2!r} must be in [0, pi)")
    if not 0 <= m3 < 2:
        raise ConfigError(f"config key 'head.margin.m3': {m3!r} must be in [0, 2)")
    return m1, m2, m3


# Keys that only matter when another key says so. Each entry: (key, the reason it is unused in
# ``cfg``, or None when it is used). A value other than the default on an unused key is refused:
# an option that is set and then silently ignored is a wasted run. The margin's m1/m2/m3 are
# checked by margin_params; the backbone options by models.factory.config_kwargs.
UNUSED_WHEN: list[tuple[str, Callable[[Config], str | None]]] = [
    ("optim.momentum", lambda c: None if c.optim.name == "sgd" else f"optim.name is {c.optim.name}"),
    ("optim.betas", lambda c: None if c.optim.name == "adamw" else f"optim.name is {c.optim.name}"),
    ("train.eval_every", lambda c: None if c.eval.bins else "eval.bins is empty"),
    ("eval.batch_size", lambda c: None if c.eval.bins else "eval.bins is empty"),
    ("eval.flip", lambda c: None if c.eval.bins else "eval.bins is empty"),
    (
        "data.prefetch",
        lambda c: (
            None if c.data.num_workers > 0 or c.data.dali else "data.num_workers is 0 (no worker prefetches)"
        ),
    ),
]


def get_key(cfg: Config, key: str) -> Any:
    """The value at dotted ``key`` (``"optim.lr"``)."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _range_checks(cfg: Config) -> list[tuple[bool, str, str]]:
    """(ok, key, what it must be) for every key with a range; NaN fails every comparison, as it should."""
    d, m, h, o, t, e = cfg.data, cfg.model, cfg.head, cfg.optim, cfg.train, cfg.eval
    augment = [
        (0.0 <= getattr(d.augment, f.name) <= 1.0, f"data.augment.{f.name}", "must be in [0, 1]")
        for f in dataclasses.fields(d.augment)
    ]
    return [
        (d.batch_size > 0, "data.batch_size", "must be > 0"),
        (d.num_workers >= 0, "data.num_workers", "must be >= 0"),
        (d.num_classes >= 0, "data.num_classes", "must be >= 0"),
        (d.max_pixels >= 0, "data.max_pixels", "must be >= 0"),
        (d.prefetch >= 1, "data.prefetch", "must be >= 1"),
        *augment,
        (m.embedding_size > 0, "model.embedding_size", "must be > 0"),
        (0.0 <= m.dropout < 1.0, "model.dropout", "must be in [0, 1)"),
        (0.0 <= m.drop_path_rate < 1.0, "model.drop_path_rate", "must be in [0, 1)"),
        (0.0 <= m.mask_ratio < 1.0, "model.mask_ratio", "must be in [0, 1)"),
        (0.0 <= h.sample_rate <= 1.0, "head.sample_rate", "must be in [0, 1]"),
        (h.margin.s > 0, "head.margin.s", "must be > 0"),
        (o.lr > 0, "optim.lr", "must be > 0"),
        (o.lr_batch_size >= 0, "optim.lr_batch_size", "must be >= 0 (0: lr as given)"),
        (0.0 <= o.momentum < 1.0, "optim.momentum", "must be in [0, 1)"),
        (o.weight_decay >= 0, "optim.weight_decay", "must be >= 0"),
        (len(o.betas) == 2, "optim.betas", "must have two values"),
        (all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", "must both be in [0, 1)"),
        (o.warmup_epochs >= 0, "optim.warmup_epochs", "must be >= 0"),
        (o.power >= 0, "optim.power", "must be >= 0"),
        (o.clip_grad_norm >= 0, "optim.clip_grad_norm", "must be >= 0 (0 disables)"),
        (e.batch_size > 0, "eval.batch_size", "must be > 0"),
        (t.epochs >= 0, "train.epochs", "must be >= 0"),
        (t.max_steps >= 0, "train.max_steps", "must be >= 0 (0: run all epochs)"),
        (t.epochs > 0 or t.max_steps > 0, "train.epochs", "must be > 0 (or set train.max_steps)"),
        (0 <= t.seed < 2**32, "train.seed", "must be in [0, 2**32)"),
        (
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device) is not None,
            "train.device",
            "must be auto, cpu, cuda or cuda:N",
        ),
        (t.log_every >= 1, "train.log_every", "must be >= 1"),
        (t.eval_every >= 0, "train.eval_every", "must be >= 0 (0: only at the end)"),
        (t.save_every >= 0, "train.save_every", "must be >= 0 (0: only at the end)"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints", "must be >= 1"),
        (t.output.strip() != "", "train.output", "must name a folder"),
        (
            not Path(t.output).is_file(),
            "train.output",
            "names a file; it must be a folder (or not exist yet)",
        ),
    ]


def validate(cfg: Config) -> None:
    """Ranges, keys set where they have no effect, the margin; the message names the key and the value."""
    for key in all_keys():  # .inf / .nan load as floats; no key of the schema means either
        value = get_key(cfg, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {key!r}: {value!r} must be a finite number")
    for ok, key, why in _range_checks(cfg):
        if not ok:
            raise ConfigError(f"config key {key!r}: {short_repr(get_key(cfg, key))} {why}")
    defaults = Config()
    for key, unused in UNUSED_WHEN:
        value = get_key(cfg, key)
        reason = unused(cfg)
        if reason is not None and value != get_key(defaults, key):
            raise ConfigError(f"config key {key!r}: {short_repr(value)} has no effect because {reason}")
    margin_params(cfg.head.margin)


def resolve(cfg: Config) -> Config:
    """Fill the values left to their named default (the margin's m1, m2, m3) with those used."""
    m = cfg.head.margin
    m.m1, m.m2, m.m3 = margin_params(m)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any], where: str = "saved config") -> Config:
    cfg = Config()
    _apply(cfg, data, "", where)
    validate(cfg)
    return resolve(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config (every key, defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
