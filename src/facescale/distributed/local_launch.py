"""Run a function on W local processes joined in one process group (tests, benchmarks, demos).

``torchrun`` is the launcher for real jobs; this is the in-Python equivalent for a single host:
each child gets the torchrun variables as a plain mapping (never through ``os.environ``), so the
function under test goes through ``context_from_environ`` exactly like a torchrun job does.
"""

from __future__ import annotations

import queue
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child(
    rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...], results: Any
) -> None:
    environ = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    try:
        results.put((rank, True, fn(environ, *args)))
    except BaseException:
        results.put((rank, False, traceback.format_exc()))


class WorkerFailed(RuntimeError):
    """A child process raised or did not finish in time; the message holds its traceback."""


def run_local_processes(
    fn: Callable[..., Any],
    world_size: int,
    args: tuple[Any, ...] = (),
    timeout_s: float = 120.0,
    preload: Sequence[str] = ("torch", "torch.distributed"),
) -> list[Any]:
    """Call ``fn(environ, *args)`` in ``world_size`` spawned processes; return their results by rank.

    ``fn`` must be importable (module level) and return something picklable. If any rank raises,
    or the ranks do not all finish within ``timeout_s`` (a hang), the children are terminated and
    WorkerFailed carries every traceback collected. ``preload``: modules the fork server imports
    once (only the first call in a process starts the server, so only its list counts).
    """
    # forkserver: torch is imported once, in the server, and each child is a cheap fork of it
    # (a plain fork of the caller could inherit live threads; spawn re-imports torch per child).
    spawn = mp.get_context("forkserver")
    spawn.set_forkserver_preload(list(preload))
    results = spawn.Queue()
    port = free_port()
    procs = [
        spawn.Process(target=_child, args=(r, world_size, port, fn, args, results), daemon=True)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    outcomes: dict[int, tuple[bool, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outcomes) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                rank, ok, value = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and results.empty():
                    break
                continue
            outcomes[rank] = (ok, value)
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
    failures = [f"rank {r}:\n{v}" for r, (ok, v) in sorted(outcomes.items()) if not ok]
    missing = [r for r in range(world_size) if r not in outcomes]
    if missing:
        failures.append(f"ranks {missing} did not finish within {timeout_s:.0f} s (hung or crashed)")
    if failures:
        raise WorkerFailed("\n".join(failures))
    return [outcomes[r][1] for r in range(world_size)]
