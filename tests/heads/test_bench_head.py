"""The head benchmark's bookkeeping on a tiny problem (no timing is asserted)."""

import json

import pytest
import torch

import facescale.bench.head as bench_head
from facescale.bench.head import MODES, format_table, run_head_bench
from facescale.cli.main import main


def test_every_mode_runs_and_reports_exact_state_bytes():
    rows = run_head_bench(
        [300], dim=8, batch=4, sample_rate=0.1, modes=list(MODES), device=torch.device("cpu"), steps=1
    )
    per_class = {r.mode: r.state_bytes / r.classes for r in rows}
    assert per_class == {
        "sparse": 64,
        "sparse-bf16": 32,
        "offload-bf16": 32,
        "dense": 96,
        "arcface": 96,
        "full-softmax": 96,
    }
    assert all(r.ms_per_step is not None and r.ms_per_step > 0 for r in rows)
    assert {r.mode: r.sampled for r in rows}["sparse"] >= 30
    syncs = {r.mode: r.host_syncs for r in rows}
    # the census sees arcface_torch's unique / boolean indexing / where, and only the deferred
    # label check in facescale's sparse modes
    assert all(syncs[m] <= 1 for m in ("sparse", "sparse-bf16", "offload-bf16")), syncs
    assert syncs["arcface"] >= 4
    table = format_table(rows, "peak")
    assert "0.67x" in table and "0.33x" in table


def test_an_out_of_memory_mode_is_a_row_and_the_rest_still_run(monkeypatch):
    real = bench_head.bench_mode

    def flaky(name, num_classes, *args, **kwargs):
        if name == "dense" and num_classes == 5000:  # not the small warm-up run
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(name, num_classes, *args, **kwargs)

    monkeypatch.setattr(bench_head, "bench_mode", flaky)
    rows = run_head_bench(
        [5000],
        dim=8,
        batch=4,
        sample_rate=0.1,
        modes=["dense", "sparse"],
        device=torch.device("cpu"),
        steps=1,
    )
    assert [(r.mode, r.status) for r in rows] == [("dense", "OOM"), ("sparse", "ok")]
    assert "dense (OOM)" in format_table(rows, "peak")

    def broken(*args, **kwargs):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(bench_head, "bench_mode", broken)
    with pytest.raises(RuntimeError, match="a real bug"):
        run_head_bench([400], dim=8, batch=4, sample_rate=0.1, modes=["sparse"], device=torch.device("cpu"))


def test_the_default_limit_is_the_device_memory():
    assert bench_head.device_memory_bytes(torch.device("cpu")) > 1 << 28
    rows = run_head_bench(
        [10**12], dim=512, batch=4, sample_rate=0.1, modes=["sparse"], device=torch.device("cpu")
    )
    assert rows[0].status == "estimate"


def test_modes_over_the_memory_cap_are_estimated_not_run():
    rows = run_head_bench(
        [10_000_000],
        dim=512,
        batch=4,
        sample_rate=0.1,
        modes=["sparse-bf16"],
        device=torch.device("cpu"),
        max_state_bytes=1 << 20,
    )
    assert rows[0].estimated and rows[0].state_bytes == 10_000_000 * 2048 and rows[0].status == "estimate"


def test_cli_prints_the_table(capsys):
    code = main(
        [
            "bench",
            "head",
            "--classes",
            "200",
            "--dim",
            "8",
            "--batch",
            "4",
            "--steps",
            "1",
            "--modes",
            "sparse,dense",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "sparse" in out and "dense" in out and "state B/class" in out


def test_cli_json_lines_have_the_fields(capsys):
    args = ["bench", "head", "--classes", "200,300", "--dim", "8", "--batch", "4", "--steps", "1"]
    assert main([*args, "--modes", "sparse-bf16,arcface", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["classes"], r["mode"]) for r in lines] == [
        (200, "sparse-bf16"),
        (200, "arcface"),
        (300, "sparse-bf16"),
        (300, "arcface"),
    ]
    fields = {
        "classes",
        "mode",
        "state_bytes_per_class",
        "peak_bytes_per_class",
        "ms_per_step",
        "host_syncs_per_step",
    }
    for r in lines:
        assert fields <= set(r) and r["ms_per_step"] > 0 and r["state_bytes_per_class"] > 0
    assert lines[0]["state_bytes_per_class"] == 32 and lines[0]["host_syncs_per_step"] <= 1


def test_whole_training_steps_with_a_backbone_in_front(capsys):
    args = [
        "bench",
        "head",
        "--classes",
        "300",
        "--dim",
        "32",
        "--batch",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]
    assert main([*args, "--modes", "sparse-bf16,arcface", "--backbone", "mbf_tiny", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mode"] for r in lines] == ["sparse-bf16", "arcface"] and all(
        r["ms_per_step"] > 0 for r in lines
    )
    assert lines[0]["host_syncs_per_step"] <= 1
