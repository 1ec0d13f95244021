"""Margins on cosine logits: the target logit becomes ``s * (cos(m1 * theta + m2) - m3)``.

A margin is a pure function of (cosine [B, C], labels [B]) -> logits [B, C], where labels index the
columns and -1 means "this sample's class is not among these columns" (it lives on another rank,
or was not sampled here). Non-target logits are ``s * cosine``.

The function on the target, as a function of c = cos(theta):

* while m1 * theta + m2 <= pi: ``cos(m1 * theta + m2) - m3``;
* beyond that, ``cos(m1 * theta + m2)`` would turn back up (a larger angle would score *better*),
  so we continue with the line ``c - c_star - 1 - m3`` of slope 1 in c, where c_star is the cosine
  at the threshold angle theta* = (pi - m2) / m1. Unlike the classic arcface fallback
  ``c - m * sin(m)`` this is continuous at theta*, and it is increasing in c everywhere, so the
  margin never rewards a worse angle. The gradient is exact for this function.

c is clamped to [-1 + eps, 1 - eps] before acos: d acos(c)/dc is infinite at +-1. The clamp is part
of the function (its gradient is 0 outside the interval).

Gradient. ``exact_gradient=True`` (default) differentiates the function above, the paper's
gradient: d logit / dc = s * m1 * sin(m1 * theta + m2) / sin(theta) on the arc part.
``exact_gradient=False`` reproduces arcface_torch, which writes the margin into the logits under
``torch.no_grad``: the forward value is the same, the gradient is taken as if the target logit were
``s * c - s * m3`` (it drops the factor m1 * sin(m1 * theta + m2) / sin(theta)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from facescale.config import MarginConfig, margin_params
from facescale.errors import ConfigError, FacescaleError
from facescale.registry import Registry

MarginFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MARGINS: Registry[Callable[..., CombinedMargin]] = Registry("margin")

ACOS_EPS = 1e-7


@dataclass(frozen=True)
class CombinedMargin:
    """``s * (cos(m1 * theta + m2) - m3)`` on the target logit; ArcFace and CosFace are special cases."""

    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.5
    m3: float = 0.0
    exact_gradient: bool = True

    def __post_init__(self) -> None:
        if self.s <= 0:
            raise ConfigError(f"margin scale s must be > 0, got {self.s}")
        if self.m1 <= 0:
            raise ConfigError(f"margin m1 must be > 0, got {self.m1}")
        if not 0 <= self.m2 < math.pi:
            raise ConfigError(f"margin m2 must be in [0, pi), got {self.m2}")

    @property
    def has_angular_part(self) -> bool:
        return self.m1 != 1.0 or self.m2 != 0.0

    def target_logit(self, cosine: torch.Tensor) -> torch.Tensor:
        """The margin function on target cosines (before the scale s). cosine: [N] -> [N]."""
        if not self.has_angular_part:
            return cosine - self.m3  # CosFace: no acos, no threshold, exact gradient either way
        c = cosine.clamp(-1.0 + ACOS_EPS, 1.0 - ACOS_EPS)
        angle = self.m1 * torch.acos(c) + self.m2
        theta_star = (math.pi - self.m2) / self.m1
        if theta_star >= math.pi:  # the angle never passes pi: no extension needed
            return torch.cos(angle) - self.m3
        c_star = math.cos(theta_star)
        return torch.where(angle <= math.pi, torch.cos(angle), c - c_star - 1.0) - self.m3

    def __call__(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """cosine: [B, C] in [-1, 1]; labels: int64 [B], column of the target or -1 -> logits [B, C]."""
        if labels.shape != cosine.shape[:1]:  # a shape check, no host sync
            raise FacescaleError(
                f"margin: labels of shape {list(labels.shape)} for cosines of shape {list(cosine.shape)}; "
                f"expected labels [{cosine.shape[0]}] (flatten arcface_torch's [B, 1] with labels.view(-1))"
            )
        logits = cosine * self.s
        if cosine.shape[1] == 0:
            return logits
        # Fixed shapes, no host sync: every row gathers one column (column 0 stands in for rows
        # without a target, which get their own value back).
        has_target = labels >= 0
        cols = labels.clamp(min=0).unsqueeze(1)
        target_cos = cosine.gather(1, cols).squeeze(1)
        target = self.target_logit(target_cos)
        if not self.exact_gradient:
            # arcface_torch: value of the margin, gradient of the plain cosine (minus the constant m3).
            target = target_cos + (target - target_cos).detach()
        value = torch.where(has_target, target, target_cos) * self.s
        return logits.scatter_(
            1, cols, value.unsqueeze(1)
        )  # in place on a fresh tensor: mul's backward needs no output


@MARGINS.register("arcface")
def arcface(s: float = 64.0, m: float = 0.5, exact_gradient: bool = True) -> CombinedMargin:
    """ArcFace, additive angular margin: cos(theta + m)."""
    return CombinedMargin(s=s, m1=1.0, m2=m, m3=0.0, exact_gradient=exact_gradient)


@MARGINS.register("cosface")
def cosface(s: float = 64.0, m: float = 0.4, exact_gradient: bool = True) -> CombinedMargin:
    """CosFace, additive cosine margin: cos(theta) - m."""
    return CombinedMargin(s=s, m1=1.0, m2=0.0, m3=m, exact_gradient=exact_gradient)


@MARGINS.register("combined")
def combined(
    s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, exact_gradient: bool = True
) -> CombinedMargin:
    """insightface's combined margin cos(m1 * theta + m2) - m3 (SphereFace m1, ArcFace m2, CosFace m3)."""
    return CombinedMargin(s=s, m1=m1, m2=m2, m3=m3, exact_gradient=exact_gradient)


def build_margin(cfg: MarginConfig) -> CombinedMargin:
    """The margin a config names, with the values it is given.

    ``arcface`` takes ``cfg.m2`` (0.5 when unset), ``cosface`` takes ``cfg.m3`` (0.4 when unset),
    ``combined`` all three; a value the named margin has no use for is a ConfigError naming the
    key (``config.margin_params``). Every margin takes ``cfg.s`` and ``cfg.exact_gradient``.
    """
    builder = MARGINS.get(cfg.name)
    m1, m2, m3 = margin_params(cfg)
    if cfg.name == "arcface":
        return builder(s=cfg.s, m=m2, exact_gradient=cfg.exact_gradient)
    if cfg.name == "cosface":
        return builder(s=cfg.s, m=m3, exact_gradient=cfg.exact_gradient)
    return builder(s=cfg.s, m1=m1, m2=m2, m3=m3, exact_gradient=cfg.exact_gradient)
