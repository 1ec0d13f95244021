"""IResNet (improved residual networks for face recognition: Deng et al., ArcFace; Duta et al.).

Layer names, shapes and arithmetic equal insightface ``arcface_torch`` so its ``backbone.pth``
files load with ``strict=True`` and give the same embeddings (proven by
``tests/models/test_insightface_compat.py`` against ``fixtures/insightface_compat``):

- stem: 3x3 conv (stride 1) -> BN -> PReLU at 112x112;
- four stages of pre-activation basic blocks ``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN``
  plus the (optionally downsampled) identity, widths 64/128/256/512, each stage halving the
  resolution (112 -> 56 -> 28 -> 14 -> 7);
- embedding: BN -> flatten (512*7*7) -> dropout -> linear -> BN1d whose scale is frozen at 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from facescale.models.base import BACKBONES, FaceBackbone, check_positive, run_blocks

BN_EPS = 1e-5
FINAL_RESOLUTION = 7  # 112 / 2**4


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """``[B, C_in, H, W] -> [B, C_out, H/stride, W/stride]``; BN before the first conv, no final ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(FaceBackbone):
    """IResNet with ``layers[i]`` basic blocks in stage i; ``[B, 3, 112, 112] -> [B, embedding_size]``."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        grad_checkpoint: bool = False,
        amp_body: str | None = None,
    ) -> None:
        super().__init__(amp_body=amp_body, grad_checkpoint=grad_checkpoint)
        check_positive("embedding_size", embedding_size, minimum=1)
        check_positive("dropout", dropout, maximum=1.0)
        self.embedding_size = embedding_size
        widths = (64, 128, 256, 512)
        self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        in_channels = widths[0]
        stages = []
        for width, depth in zip(widths, layers):
            blocks = [IBasicBlock(in_channels, width, stride=2)]
            blocks += [IBasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(widths[-1], eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(widths[-1] * FINAL_RESOLUTION**2, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        # insightface's recipe (what its published accuracy was trained with): N(0, 0.1) convolutions,
        # unit BN; the embedding BN's scale stays fixed at 1 so only its shift and the linear layer
        # set the embedding norm.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.features.weight.requires_grad_(False)

    def embedding_dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 112, 112] -> [B, 512 * 7 * 7]``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        blocks = [b for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for b in stage]
        x = run_blocks(blocks, x, self.checkpointing())
        return torch.flatten(self.bn2(x), 1)

    def forward_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, 25088] -> [B, embedding_size]``."""
        return self.features(self.fc(self.dropout(features)))


def _iresnet(layers: tuple[int, int, int, int]) -> Callable[..., IResNet]:
    """A builder with keyword options for the IResNet with these block counts."""

    def build(
        embedding_size: int = 512,
        dropout: float = 0.0,
        grad_checkpoint: bool = False,
        channels_last: bool = False,
        amp_body: str | None = None,
    ) -> IResNet:
        model = IResNet(layers, embedding_size, dropout, grad_checkpoint, amp_body)
        model.use_channels_last(channels_last)
        return model

    build.__doc__ = f"IResNet with {list(layers)} blocks per stage."
    return build


# Block counts per stage, as in insightface.
BACKBONES.register("r18")(_iresnet((2, 2, 2, 2)))
BACKBONES.register("r34")(_iresnet((3, 4, 6, 3)))
BACKBONES.register("r50")(_iresnet((3, 4, 14, 3)))
BACKBONES.register("r100")(_iresnet((3, 13, 30, 3)))
BACKBONES.register("r200")(_iresnet((6, 26, 60, 6)))
