"""Multi-node as users launch it (issue 16.16): two ``torchrun`` agents on this machine, 2 nodes x
1 process, rendezvous on 127.0.0.1. They train to the weights of one process with the same
global batch; when one node is killed the other stops with a clear message in bounded time;
``--resume`` on one node continues."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rec_factory import write_color_rec

HERE = Path(__file__).resolve().parent

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
STOP_WITHIN_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keys(rec: Path, run: Path, batch: int, steps: int, *extra: str) -> list[str]:
    return [
        f"data.root={rec}", f"data.batch_size={batch}", "data.num_workers=0", "data.augment.hflip=0",
        "model.name=bnfree_tiny", "model.embedding_size=32", "head.sample_rate=1.0", "head.margin.s=16.0",
        "head.matmul_dtype=float32",  # exact GEMMs: reduced-precision ones round per batch shape
        "optim.lr=0.05", f"train.max_steps={steps}", "train.log_every=1",
        "train.tensorboard=false", "train.progress=false", f"train.output={run}", *extra,
    ]  # fmt: skip


def flags(items: list[str]) -> list[str]:
    return [token for key in items for token in ("-o", key)]


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_stray_nodes():
    """Agents and workers of a failed test must not keep training beside the next tests."""
    yield
    for agent in STARTED:
        if agent.poll() is None:
            kill_node(agent)
    STARTED.clear()


def node(rank: int, port: int, *args: str) -> subprocess.Popen:
    """One node's agent, in its own session so that killing it takes its worker down too."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
        f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
        str(HERE / "bnfree_main.py"), "train", *args,
    ]  # fmt: skip
    agent = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )
    STARTED.append(agent)
    return agent


def kill_node(agent: subprocess.Popen) -> None:
    """SIGKILL an agent and its workers at once, as when a node is lost (torchrun starts each
    worker in a session of its own, so killing the agent's process group would miss them)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == agent.pid:  # the field after the state is the parent's pid
            workers.append(int(stat.parent.name))
    for pid in [agent.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    agent.communicate()


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "backbone.pth", weights_only=True)


@pytest.mark.slow
def test_two_nodes_match_one_process_and_survive_losing_a_node(tmp_path):
    rec = write_color_rec(tmp_path / "rec", num_classes=8, per_class=8)  # 64 images

    # One process, global batch 16 (through the CLI too, so the test backbone is registered only
    # in the child processes, never in this one's registry where registry-wide tests would see it).
    one = subprocess.run(
        [sys.executable, str(HERE / "bnfree_main.py"), "train", *flags(keys(rec, tmp_path / "one", 16, 6))],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]

    # Two nodes x one process, batch 8 each: the same global batch.
    port = free_port()
    two = tmp_path / "two"
    nodes = [node(r, port, *flags(keys(rec, two, 8, 6))) for r in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in nodes]
    for p, (_, err) in zip(nodes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "2 process(es)" in outputs[0][0]
    ref, ours = weights(tmp_path / "one"), weights(two)
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-4, atol=1e-5, msg=name)

    # Kill node 1 mid-run: node 0 must stop by itself, quickly, saying what happened.
    port = free_port()
    run = tmp_path / "killed"
    long = flags(keys(rec, run, 8, 400, "train.save_every=2"))
    nodes = [node(r, port, *long) for r in (0, 1)]
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not latest.exists():
        assert all(p.poll() is None for p in nodes), nodes[0].communicate()[1][-3000:]
        time.sleep(0.05)
    assert latest.exists(), "no checkpoint was written"
    assert nodes[1].poll() is None
    kill_node(nodes[1])
    killed_at = time.monotonic()
    _, err = nodes[0].communicate(timeout=STOP_WITHIN_S + 60)
    took = time.monotonic() - killed_at
    assert nodes[0].returncode != 0
    assert took < STOP_WITHIN_S, f"node 0 took {took:.0f} s to notice"
    assert "lost contact with another process of the job" in err, err[-3000:]
    assert f"facescale train --resume {run}" in err
    assert "src/facescale/" not in err, err[-3000:]  # one line, no traceback from facescale's code

    # Resume on one node (one process, the same global batch): it continues from the checkpoint.
    stopped = int(latest.read_text().split("-")[1])
    resumed = subprocess.run(
        [sys.executable, str(HERE / "bnfree_main.py"), "train", "--resume", str(run),
         "-o", "data.batch_size=16", "-o", f"train.max_steps={stopped + 2}"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {stopped}" in resumed.stdout
    assert (run / "backbone.pth").exists()
