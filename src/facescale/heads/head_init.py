"""Start a Partial FC head from another run's class centres (``head.init_weights``).

Today's source: arcface_torch's per-rank checkpoints ``checkpoint_gpu_{rank}.pt`` (a run switching
from arcface_torch mid-training keeps what its head learned, as ``model.init_weights`` keeps the
backbone). Any number of arcface_torch ranks reads into any number of facescale processes.
"""

from __future__ import annotations

from pathlib import Path

from facescale.errors import FacescaleError
from facescale.heads.partial_fc import PartialFC
from facescale.heads.shard_io import read_arcface_torch_centres


def init_head_from_arcface_torch(head: PartialFC, directory: str | Path) -> None:
    """Set ``head``'s centres from the arcface_torch checkpoints in ``directory`` (on every rank).

    Each rank reads the rows of its own classes; an error on any rank (a missing rank file, a
    head of another class count or dimension) is raised on all of them, so none waits alone in
    the next collective. The optimizer state stays zero, as arcface_torch's momentum is not read.
    """
    error, centres = None, None
    try:
        centres = read_arcface_torch_centres(directory, head.num_classes, head.embedding_size, head.classes)
    except FacescaleError as e:
        error = f"head.init_weights: {e}"
    head.ctx.fail_together(error)
    assert centres is not None
    head.set_centres(centres)
