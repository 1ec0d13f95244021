"""One way to create a backbone: by registry name and keyword options, or from a ModelConfig.

``BackboneSpec`` is what a run directory records (``backbone.json``) and a checkpoint holds
(``backbone_spec``) so the same module can be rebuilt for evaluation or export.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from facescale.config import ModelConfig
from facescale.errors import ConfigError, FacescaleError
from facescale.models.base import BACKBONES

# Options that change how a module runs, not its weights: left out of a saved spec and
# dropped when a backbone is rebuilt for inference.
RUNTIME_OPTIONS = ("grad_checkpoint", "channels_last", "amp_body")

# ModelConfig fields passed to the builder when it accepts them.
CONFIG_OPTIONS = (
    "embedding_size",
    "dropout",
    "drop_path_rate",
    "mask_ratio",
    "grad_checkpoint",
    "channels_last",
)


@dataclass
class BackboneSpec:
    """``build_backbone(spec.name, **spec.kwargs)`` rebuilds the module."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BackboneSpec:
        """Parse ``{"name": str, "kwargs": {...}}``; FacescaleError naming ``where`` otherwise."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise FacescaleError(
                f"{where}: backbone spec must be {{'name': str, 'kwargs': {{...}}}}, got {data!r}"
            )
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise FacescaleError(f"{where}: backbone spec 'kwargs' must be a mapping, got {kwargs!r}")
        return cls(data["name"], dict(kwargs))

    def for_inference(self) -> BackboneSpec:
        """The same architecture without the runtime-only options."""
        return BackboneSpec(self.name, {k: v for k, v in self.kwargs.items() if k not in RUNTIME_OPTIONS})


def backbone_options(name: str) -> dict[str, Any]:
    """The keyword options of backbone ``name`` and their defaults."""
    builder = BACKBONES.get(name)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY or p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    }


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Create backbone ``name`` (see ``facescale models``): ``[B, 3, 112, 112] -> [B, embedding_size]``.

    Unknown names and options raise ConfigError naming them and listing what is accepted.
    """
    options = backbone_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(
            f"backbone {name!r} has no option {', '.join(unknown)} (it accepts: {', '.join(options)})"
        )
    return BACKBONES.get(name)(**kwargs)


def config_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """The builder options a ModelConfig sets for ``cfg.name``.

    A field the backbone does not have is fine at its default and a ConfigError otherwise
    (e.g. ``model.mask_ratio=0.2`` for ``r50``): a silently ignored option is a wasted run.
    """
    options = backbone_options(cfg.name)
    defaults = ModelConfig()
    kwargs: dict[str, Any] = {}
    unsupported = []
    for key in CONFIG_OPTIONS:
        value = getattr(cfg, key)
        if key in options:
            kwargs[key] = value
        elif value != getattr(defaults, key):
            unsupported.append(f"model.{key}={value!r}")
    if unsupported:
        raise ConfigError(
            f"backbone {cfg.name!r} does not support {', '.join(unsupported)} "
            f"(its options: {', '.join(options)})"
        )
    return kwargs


def backbone_from_config(cfg: ModelConfig, amp_body: str | None = None) -> nn.Module:
    """Build ``cfg.name`` with the options in ``cfg`` (``amp_body``: ``"fp16"``/``"bf16"``/None).

    ``cfg.compile`` and ``cfg.init_weights`` are applied by the caller (the training loop):
    compiling must wrap the data-parallel module, and resuming must not reload initial weights.
    """
    kwargs = config_kwargs(cfg)
    if amp_body is not None:
        kwargs["amp_body"] = amp_body
    return build_backbone(cfg.name, **kwargs)


def spec_from_config(cfg: ModelConfig) -> BackboneSpec:
    """The spec to save with a run: the architecture options of ``cfg``, runtime ones left out."""
    return BackboneSpec(cfg.name, config_kwargs(cfg)).for_inference()
