"""Face ViT: a plain vision transformer over 9x9 patches of a 112x112 face.

The layout follows insightface ``arcface_torch``'s face ViT (its parameter names are kept):
a 9x9 stride-9 conv cuts 144 patches (12x12; the last 4 pixel rows and columns are dropped),
a learned position embedding is added, there is **no class token**; pre-norm blocks
(LayerNorm -> multi-head attention, LayerNorm -> MLP with ReLU6) with stochastic depth
rising linearly to ``drop_path_rate``; a final LayerNorm; then every token is kept: the
embedding layer is flatten (144*dim) -> (dropout) -> linear -> BN1d -> linear -> BN1d.

Training-time patch masking: a random ``mask_ratio`` of the 144 tokens of each image is
dropped before the blocks (so the blocks also run faster) and the learned ``mask_token``
stands in for them in the flattened output. arcface_torch stores a ratio but always masks
10%; here the configured ratio is what is applied: ``round(144 * mask_ratio)`` tokens.

Sizes (dim, depth, heads): tiny 256/12/8, small 512/12/8, base 512/24/8, large 768/24/8.
Large keeps arcface_torch's 8 heads (head dim 96): wider heads than timm's 16x48 keep the
attention matmuls efficient, and the MAC count is identical either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from facescale.models.base import BACKBONES, FaceBackbone, check_positive, run_blocks

IMAGE_SIZE = 112
PATCH_SIZE = 9
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 144
HEAD_BN_EPS = 2e-5


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention, ``[B, N, dim] -> [B, N, dim]``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, head_dim], softmax scale 1/sqrt(d)
        return self.proj(out.transpose(1, 2).reshape(b, n, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, ``[B, N, dim] -> [B, N, dim]``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """``[B, 3, 112, 112] -> [B, 144, dim]`` by a 9x9 stride-9 convolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"ViT expects {IMAGE_SIZE}x{IMAGE_SIZE} inputs, got {tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)


class FaceViT(FaceBackbone):
    """``[B, 3, 112, 112] -> [B, embedding_size]``."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        embedding_size: int = 512,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        mask_ratio: float = 0.0,
        grad_checkpoint: bool = False,
        amp_body: str | None = None,
    ) -> None:
        super().__init__(amp_body=amp_body, grad_checkpoint=grad_checkpoint)
        check_positive("embedding_size", embedding_size, minimum=1)
        check_positive("dropout", dropout, maximum=1.0)
        check_positive("drop_path_rate", drop_path_rate, maximum=1.0)
        check_positive("mask_ratio", mask_ratio, maximum=1.0)
        self.embedding_size = embedding_size
        self.dim = dim
        self.mask_ratio = mask_ratio
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, NUM_PATCHES, dim))
        # Stochastic depth rising linearly from 0 (first block) to drop_path_rate (last block).
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dropout = nn.Dropout(dropout)
        self.feature = nn.Sequential(
            nn.Linear(dim * NUM_PATCHES, dim, bias=False),
            nn.BatchNorm1d(dim, eps=HEAD_BN_EPS),
            nn.Linear(dim, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, eps=HEAD_BN_EPS),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def num_kept_tokens(self) -> int:
        """Tokens that enter the blocks: all 144 in eval, ``144 - round(144 * mask_ratio)`` in training."""
        if not self.training or self.mask_ratio == 0.0:
            return NUM_PATCHES
        return max(1, NUM_PATCHES - round(NUM_PATCHES * self.mask_ratio))

    def embedding_dtype(self) -> torch.dtype:
        return cast(nn.Linear, self.feature[0]).weight.dtype

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 112, 112] -> [B, 144 * dim]`` (masked tokens replaced by ``mask_token``)."""
        tokens = self.patch_embed(x) + self.pos_embed
        b = tokens.shape[0]
        keep = self.num_kept_tokens()
        if keep == NUM_PATCHES:
            tokens = run_blocks(self.blocks, tokens, self.checkpointing())
            return self.norm(tokens).reshape(b, NUM_PATCHES * self.dim)
        # Per image, a random subset of `keep` tokens goes through the blocks, in random order
        # (attention has no notion of order beyond the position embedding already added).
        order = torch.rand(b, NUM_PATCHES, device=tokens.device).argsort(dim=1)
        kept_idx = order[:, :keep, None].expand(-1, -1, self.dim)
        kept = run_blocks(self.blocks, tokens.gather(1, kept_idx), self.checkpointing())
        kept = self.norm(kept)
        out = self.mask_token.to(kept.dtype).expand(b, NUM_PATCHES, self.dim).clone()
        out = out.scatter(1, kept_idx, kept)
        return out.reshape(b, NUM_PATCHES * self.dim)

    def forward_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, 144 * dim] -> [B, embedding_size]``."""
        return self.feature(self.dropout(features))


def _vit(dim: int, depth: int, num_heads: int) -> Callable[..., FaceViT]:
    """A builder with keyword options for the ViT of this size."""

    def build(
        embedding_size: int = 512,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        mask_ratio: float = 0.0,
        grad_checkpoint: bool = False,
        channels_last: bool = False,
        amp_body: str | None = None,
    ) -> FaceViT:
        model = FaceViT(
            dim,
            depth,
            num_heads,
            embedding_size=embedding_size,
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            mask_ratio=mask_ratio,
            grad_checkpoint=grad_checkpoint,
            amp_body=amp_body,
        )
        model.use_channels_last(channels_last)
        return model

    build.__doc__ = f"Face ViT, dim {dim}, depth {depth}, {num_heads} heads, 9x9 patches (144 tokens)."
    return build


BACKBONES.register("vit_t")(_vit(256, 12, 8))
BACKBONES.register("vit_s")(_vit(512, 12, 8))
BACKBONES.register("vit_b")(_vit(512, 24, 8))
BACKBONES.register("vit_l")(_vit(768, 24, 8))
