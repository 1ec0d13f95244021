"""Refuse to checkpoint a run whose loss or weights stopped being finite.

The loss is read on the host only at log steps; a NaN between two of them would otherwise be
saved when ``save_every`` is not a multiple of ``log_every``, and pruning would then delete the
last good checkpoints. The trainer keeps a device-side flag (``flag |= ~isfinite(loss)``, no
sync) and this check runs once before every save.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_NAMED = 3


def nonfinite_report(flag: torch.Tensor, module: nn.Module, step: int) -> str | None:
    """A message when ``flag`` (bool scalar: some loss since the start was not finite) is set or
    a parameter of ``module`` holds NaN/inf; None when all is finite. Reads the device once."""
    checks = [flag.reshape(1)]
    names = []
    for name, param in module.named_parameters():
        names.append(name)
        checks.append(~torch.isfinite(param.detach()).all().reshape(1))
    bad = torch.cat([c.to(flag.device) for c in checks]).cpu().tolist()
    if not any(bad):
        return None
    params = [n for n, b in zip(names, bad[1:], strict=True) if b]
    what = []
    if bad[0]:
        what.append("the loss was NaN or inf at some step")
    if params:
        shown = ", ".join(params[:MAX_NAMED]) + (
            f" and {len(params) - MAX_NAMED} more" if len(params) > MAX_NAMED else ""
        )
        what.append(f"parameters {shown} hold NaN or inf")
    return (
        f"not saving the checkpoint of step {step}: {' and '.join(what)}; the earlier checkpoints are "
        "kept. Lower optim.lr, raise optim.warmup_epochs or set optim.clip_grad_norm, then --resume"
    )
