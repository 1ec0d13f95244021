"""MobileFaceNet (Chen et al., 2018): depthwise-separable bottlenecks and a global depthwise conv.

``mbf`` and ``mbf_large`` have insightface ``arcface_torch``'s layer names, shapes and
arithmetic (``layers.N.layers.M...``, ``conv_sep``, ``features``), so its ``backbone.pth``
files load with ``strict=True``. Their structure:

- stem: 3x3 conv stride 2 -> BN -> PReLU (112 -> 56), then either a depthwise 3x3 conv
  (``blocks[0] == 1``) or ``blocks[0]`` residual bottlenecks;
- three downsampling bottlenecks (56 -> 28 -> 14 -> 7), each followed by ``blocks[1..3]``
  residual bottlenecks; a bottleneck is 1x1 expand (conv-BN-PReLU) -> 3x3 depthwise
  (conv-BN-PReLU) -> 1x1 project (conv-BN, linear);
- ``conv_sep``: 1x1 conv to 512 channels; ``features``: 7x7 global depthwise conv -> BN ->
  flatten -> (dropout) -> linear -> BN1d.

insightface fixes the bottleneck inner widths at 128/128/256/512/256 whatever ``scale``;
``expansion`` exposes them so ``mbf_tiny`` can shrink them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from facescale.models.base import BACKBONES, FaceBackbone, check_positive, run_blocks

FINAL_RESOLUTION = 7
HEAD_CHANNELS = 512


class ConvBlock(nn.Module):
    """conv -> BN -> PReLU; the attribute names match insightface (``layers.0/1/2``)."""

    def __init__(
        self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
            nn.PReLU(out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """conv -> BN, no activation (the projection of a bottleneck)."""

    def __init__(
        self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Bottleneck ``in_c -> inner (1x1) -> inner (3x3 depthwise, stride) -> out_c (1x1, linear)``."""

    def __init__(self, in_c: int, out_c: int, inner: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, inner),
            ConvBlock(inner, inner, kernel=3, stride=stride, padding=1, groups=inner),
            LinearBlock(inner, out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_blocks`` residual bottlenecks at constant width ``c``."""

    def __init__(self, c: int, num_blocks: int, inner: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, inner, residual=True) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv embedding: ``[B, 512, 7, 7] -> [B, embedding_size]``."""

    def __init__(self, embedding_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        # Indices 0..3 match insightface's Sequential; dropout lives outside it so keys stay equal.
        self.layers = nn.Sequential(
            LinearBlock(HEAD_CHANNELS, HEAD_CHANNELS, kernel=FINAL_RESOLUTION, groups=HEAD_CHANNELS),
            nn.Flatten(),
            nn.Linear(HEAD_CHANNELS, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[1](self.layers[0](x))
        return self.layers[3](self.layers[2](self.dropout(x)))


class MobileFaceNet(FaceBackbone):
    """``[B, 3, 112, 112] -> [B, embedding_size]``.

    ``blocks``: residual bottlenecks after the stem and after each of the three downsamplings;
    ``scale``: stage widths are 64*scale, 64*scale, 128*scale, 128*scale;
    ``expansion``: inner widths of (stem residuals, stage 1, stage 2 down + residuals,
    stage 3 downsampling, stage 3 residuals);
    ``stem_width``: channels at 56x56 before the first downsampling (default 64*scale).
    """

    def __init__(
        self,
        blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
        scale: int = 2,
        expansion: tuple[int, int, int, int, int] = (128, 128, 256, 512, 256),
        stem_width: int | None = None,
        embedding_size: int = 512,
        dropout: float = 0.0,
        grad_checkpoint: bool = False,
        amp_body: str | None = None,
    ) -> None:
        super().__init__(amp_body=amp_body, grad_checkpoint=grad_checkpoint)
        check_positive("embedding_size", embedding_size, minimum=1)
        check_positive("dropout", dropout, maximum=1.0)
        self.embedding_size = embedding_size
        narrow, wide = 64 * scale, 128 * scale
        stem = narrow if stem_width is None else stem_width
        stem_inner, inner1, inner2, inner_down3, inner3 = expansion
        layers: list[nn.Module] = [ConvBlock(3, stem, kernel=3, stride=2, padding=1)]
        if blocks[0] == 1:
            # insightface: a grouped 3x3 conv with 64 groups whatever the width (2 channels per
            # group at scale 2); depthwise when the stem is 64 channels or narrower.
            layers.append(ConvBlock(stem, stem, kernel=3, padding=1, groups=min(64, stem)))
        else:
            layers.append(Residual(stem, blocks[0], stem_inner))
        layers += [
            DepthWise(stem, narrow, inner1, stride=2),
            Residual(narrow, blocks[1], inner1),
            DepthWise(narrow, wide, inner2, stride=2),
            Residual(wide, blocks[2], inner2),
            DepthWise(wide, wide, inner_down3, stride=2),
            Residual(wide, blocks[3], inner3),
        ]
        self.layers = nn.ModuleList(layers)
        self.conv_sep = ConvBlock(wide, HEAD_CHANNELS)
        self.features = GDC(embedding_size, dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embedding_dtype(self) -> torch.dtype:
        return cast(nn.Linear, self.features.layers[2]).weight.dtype

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 112, 112] -> [B, 128 * scale, 7, 7]``."""
        return run_blocks(self.layers, x, self.checkpointing())

    def forward_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, 128 * scale, 7, 7] -> [B, embedding_size]`` (conv_sep and GDC in fp32)."""
        return self.features(self.conv_sep(features))


def _mobilefacenet(
    blocks: tuple[int, int, int, int],
    scale: int,
    expansion: tuple[int, int, int, int, int] = (128, 128, 256, 512, 256),
    stem_width: int | None = None,
) -> Callable[..., MobileFaceNet]:
    """A builder with keyword options for this MobileFaceNet shape."""

    def build(
        embedding_size: int = 512,
        dropout: float = 0.0,
        grad_checkpoint: bool = False,
        channels_last: bool = False,
        amp_body: str | None = None,
    ) -> MobileFaceNet:
        model = MobileFaceNet(
            blocks, scale, expansion, stem_width, embedding_size, dropout, grad_checkpoint, amp_body
        )
        model.use_channels_last(channels_last)
        return model

    stem = "" if stem_width is None else f", stem {stem_width}"
    build.__doc__ = (
        f"MobileFaceNet, blocks {list(blocks)}, width x{scale}{stem}, inner widths {list(expansion)}."
    )
    return build


BACKBONES.register("mbf")(_mobilefacenet((1, 4, 6, 2), scale=2))
BACKBONES.register("mbf_large")(_mobilefacenet((2, 8, 12, 4), scale=4))
# The 2-core CPU demo model, still the full MobileFaceNet design (stride-2 stem, bottlenecks at
# 56/28/14/7, global depthwise embedding) but a 32-channel stem, half mbf's stage widths, narrow
# bottlenecks (inner widths below the stage width, as in mbf_large) and fewer of them. On CPU
# the high-resolution layers dominate (PReLU and batch norm there are memory-bound), hence the
# narrow stem and stage-1 bottlenecks: a fp32 training step costs about 1/6 of mbf's on CPU.
BACKBONES.register("mbf_tiny")(
    _mobilefacenet((1, 2, 2, 1), scale=1, expansion=(64, 32, 96, 192, 128), stem_width=32)
)
