"""arcface_torch's Partial FC head, as its code does it, for ``facescale bench head`` to compare against.

This follows insightface ``recognition/arcface_torch`` (``partial_fc_v2.PartialFC_V2`` with
``losses.CombinedMarginLoss`` for ArcFace and its ``DistCrossEntropy``) on one process, trained as
``train_v2.py`` does: ``torch.optim.SGD`` (momentum 0.9, weight decay 5e-4) over the whole
``[C, D]`` weight. What makes it the baseline:

* the weight is one parameter and the sampled rows are taken with ``weight[index]``, so backward
  makes a dense ``[C, D]`` gradient (zeros plus the sampled rows), and SGD decays and moves every
  row, sampled or not: weight + gradient + momentum = 12 bytes per parameter;
* sampling uses ``torch.unique`` on the positives and boolean-mask indexing, the margin
  ``torch.where(labels != -1)``: each is a host sync on a GPU;
* the margin is written into the logits under ``no_grad`` (its gradient is the plain cosine's).

It is a benchmark reference, not a training path: no checkpoints, no distributed parts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facescale.config import OptimConfig
from facescale.optim_factory import build_optimizer, set_lr


class ArcFaceTorchHead:
    """``loss = head(embeddings [B, D], labels [B])``, ``loss.backward()``, ``head.step(lr)``."""

    def __init__(
        self,
        num_classes: int,
        dim: int,
        sample_rate: float,
        device: torch.device,
        optim: OptimConfig,
        s: float = 64.0,
        margin: float = 0.5,
        seed: int = 0,
    ) -> None:
        generator = torch.Generator(device=device).manual_seed(seed)
        weight = torch.normal(0, 0.01, (num_classes, dim), generator=generator, device=device)
        self.weight = torch.nn.Parameter(weight)
        self.optimizer = build_optimizer([self.weight], optim, optim.lr)
        self.num_sample = int(sample_rate * num_classes)
        self.num_classes = num_classes
        self.s, self.margin = s, margin
        self.generator = generator

    def _sample(self, labels: torch.Tensor) -> torch.Tensor:
        """PartialFC_V2.sample: the sampled row indices; remaps ``labels`` [B, 1] in place."""
        with torch.no_grad():
            positive = torch.unique(labels[labels != -1], sorted=True)
            if self.num_sample - positive.size(0) >= 0:
                perm = torch.rand(self.num_classes, device=labels.device, generator=self.generator)
                perm[positive] = 2.0
                index = torch.topk(perm, k=self.num_sample)[1]
                index = index.sort()[0]
            else:
                index = positive
            here = labels != -1
            labels[here] = torch.searchsorted(index, labels[here])
        return index

    def _margin(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CombinedMarginLoss for ArcFace (m1=1, m2=margin, m3=0), as arcface_torch writes it."""
        index_positive = torch.where(labels != -1)[0]
        target_logit = logits[index_positive, labels[index_positive].view(-1)]
        with torch.no_grad():
            target_logit.arccos_()
            logits.arccos_()
            final_target_logit = target_logit + self.margin
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits.cos_()
        return logits * self.s

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.view(-1, 1).clone()
        index = self._sample(labels)
        weight = self.weight[index]
        norm_embeddings = F.normalize(embeddings)
        norm_weight = F.normalize(weight)
        logits = F.linear(norm_embeddings, norm_weight).clamp(-1, 1)
        logits = self._margin(logits, labels.view(-1))
        return F.cross_entropy(logits, labels.view(-1))

    def step(self, lr: float) -> None:
        set_lr(self.optimizer, lr)
        self.optimizer.step()
        self.optimizer.zero_grad()  # torch 2: set_to_none, as train_v2.py's call gets

    def state_bytes(self) -> int:
        """weight + dense gradient + momentum (the gradient exists from backward to the step)."""
        return 3 * self.weight.numel() * self.weight.element_size()
