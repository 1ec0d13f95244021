"""Telling a lost peer from a bug: the one line a surviving rank prints when another one is gone.

When one process of a job fails (a bad record with ``bad_data=fail``) or its node disappears,
every other rank fails in its next collective with a backend error ("Connection closed by peer",
an NCCL watchdog timeout) and a long traceback that buries the one message that matters, which
the failing rank printed itself. The CLI asks ``peer_failure`` whether an exception is of that
kind and then prints one short line instead of the traceback.
"""

from __future__ import annotations

import torch.distributed as dist

# Texts of the errors gloo and NCCL raise when a peer's connection or process is gone.
_PEER_SIGNS = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "socket closed",
    "timed out",
    "timeout",
    "nccl communicator was aborted",
    "ncclremoteerror",
    "ncclsystemerror",
    "gloo",
)


def peer_failure(error: BaseException) -> str | None:
    """A one-line description when ``error`` says another rank or node is gone, else None."""
    is_dist = isinstance(error, dist.DistError)
    text = str(error).strip()
    lowered = text.lower()
    if not is_dist and not (isinstance(error, RuntimeError) and any(s in lowered for s in _PEER_SIGNS)):
        return None
    first = text.splitlines()[0] if text else type(error).__name__
    if len(first) > 160:
        first = first[:157] + "..."
    return (
        "lost contact with another process of the job (it failed, see its own message, "
        f"or its node went away): {first}"
    )
