"""The head benchmark's bookkeeping on a tiny problem (no timing is asserted)."""

import torch

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
        "full-softmax": 96,
    }
    assert all(r.ms_per_step is not None and r.ms_per_step > 0 for r in rows)
    assert {r.mode: r.sampled for r in rows}["sparse"] >= 30
    table = format_table(rows, "peak")
    assert "0.67x" in table and "0.33x" in table


def test_modes_over_the_memory_cap_are_estimated_not_run():
    rows = run_head_bench(
        [10_000_000], dim=512, batch=4, sample_rate=0.1, modes=["sparse-bf16"], device=torch.device("cpu"),
        max_state_bytes=1 << 20,
    )  # fmt: skip
    assert rows[0].estimated and rows[0].state_bytes == 10_000_000 * 2048


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
