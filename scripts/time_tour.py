"""Time each step of the README's quick tour, as written there, on this machine.

    .venv/bin/python scripts/time_tour.py [WORK_DIR]

Runs the tour's commands in WORK_DIR (default: a fresh temporary folder; data, runs and the
exported model go there) and prints one line per step with its wall-clock time. The README's
"(about N min on 2 cores)" notes come from this script's output.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs" / "synth_demo.yaml")

STEPS: list[tuple[str, list[str]]] = [
    ("1. synth", ["synth", "data/synthface", "--identities", "1000", "--images-per-identity", "20"]),
    (
        "2. train",
        [
            "train", "-c", RECIPE, "-o", "data.root=data/synthface",
            "-o", "eval.bins=[data/synthface/val.bin]", "-o", "train.output=runs/tour",
            "-o", "train.epochs=1",
        ],
    ),
    ("2. resume (finished run)", ["train", "--resume", "runs/tour"]),
    (
        "3. eval",
        ["eval", "runs/tour", "--bins", "data/synthface/val.bin", "data/synthface/val_hard.bin",
         "--out", "runs/tour/eval"],
    ),
    ("4. export", ["export", "runs/tour", "--out", "model.onnx"]),
    ("4. embed", ["embed", "data/synthface", "--model", "model.onnx", "--out", "embeddings/"]),
]  # fmt: skip


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="facescale_tour_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name, args in STEPS:
        print(f"\n$ facescale {shlex.join(args)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "facescale.cli.main", *args], cwd=work).returncode
        seconds = time.perf_counter() - start
        results.append((name, seconds, rc))
        print(f"[time_tour] {name}: {seconds:.1f} s (exit {rc})", flush=True)
        if rc:
            print(f"step {name!r} failed with exit code {rc}; stopping", flush=True)
            break
    print(f"\ntour timings in {work}:")
    for name, seconds, rc in results:
        print(f"  {name:28s} {seconds:8.1f} s{'' if rc == 0 else f'  (exit {rc})'}")
    return max((rc for _, _, rc in results), default=0)


if __name__ == "__main__":
    raise SystemExit(main())
