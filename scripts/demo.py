"""`make demo`: SynthFace -> train -> evaluate, on a CPU, with no download.

Prints each command as a user would type it, runs it, then compares the trained model with
the same backbone at random initialisation on the held-out verification pairs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "data/synthface_demo"
RUN = "runs/synth_demo"
CONFIG = "configs/synth_demo.yaml"
SYNTH_ARGS = ["--identities", "1000", "--images-per-identity", "24", "--val-identities", "400", "--seed", "7"]
REQUIRED_ACCURACY = 0.95


def facescale(*args: str) -> None:
    command = [str(Path(sys.executable).parent / "facescale"), *args]
    print(f"\n$ facescale {shlex.join(args)}", flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main() -> int:
    start = time.perf_counter()
    summary = ROOT / DATA / "synthface.json"
    wanted = {"args": SYNTH_ARGS}
    if summary.exists() and json.loads(summary.read_text()).get("demo_args") == SYNTH_ARGS:
        print(f"SynthFace already generated in {DATA} (delete it to regenerate)")
    else:
        facescale("synth", DATA, *SYNTH_ARGS)
        data = json.loads(summary.read_text())
        data["demo_args"] = wanted["args"]
        summary.write_text(json.dumps(data, indent=2))
    synth_done = time.perf_counter()

    if (ROOT / RUN).exists():
        import shutil

        shutil.rmtree(ROOT / RUN)  # the demo always trains from scratch
    facescale("train", "-c", CONFIG)
    train_done = time.perf_counter()

    out = f"{RUN}/eval"
    facescale("eval", RUN, "--bins", f"{DATA}/val.bin", f"{DATA}/val_hard.bin", "--out", out)
    facescale(
        "eval", f"random:{_backbone_name()}", "--bins", f"{DATA}/val.bin", "--out", f"{out}_random_init"
    )
    trained = json.loads((ROOT / out / "report.json").read_text())
    random_init = json.loads((ROOT / f"{out}_random_init" / "report.json").read_text())
    accuracy = _accuracy(trained, "val")
    baseline = _accuracy(random_init, "val")
    end = time.perf_counter()

    print("\n== facescale demo: held-out SynthFace verification (10-fold, flip)")
    print(f"{'model':<28}{'accuracy':>12}")
    print(f"{'random init':<28}{baseline:>12.4f}")
    print(f"{'trained (' + RUN + ')':<28}{accuracy:>12.4f}")
    print(
        f"time: synth {synth_done - start:.0f}s, train {train_done - synth_done:.0f}s, "
        f"eval {end - train_done:.0f}s, total {end - start:.0f}s"
    )
    if accuracy < REQUIRED_ACCURACY:
        print(f"FAILED: trained accuracy {accuracy:.4f} is below {REQUIRED_ACCURACY}", file=sys.stderr)
        return 1
    return 0


def _backbone_name() -> str:
    import yaml

    return yaml.safe_load((ROOT / CONFIG).read_text())["model"]["name"]


def _accuracy(report: dict, set_name: str) -> float:
    for entry in report["results"]:
        if entry["set"] == set_name:
            return float(entry["accuracy_mean"])
    raise SystemExit(f"no result for {set_name!r} in the report: {json.dumps(report)[:400]}")


if __name__ == "__main__":
    sys.exit(main())
