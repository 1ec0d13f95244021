"""`make demo`: SynthFace -> train -> evaluate, on a CPU, with no download.

Prints each command as a user would type it and runs it, then compares the trained model with
the same backbone at random initialisation on the held-out verification pairs (identities the
model never saw).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "data/synthface_demo"
RUN = "runs/synth_demo"
CONFIG = "configs/synth_demo.yaml"
# 0.8 of the default nuisance strength: the untrained backbone and raw pixels still score below
# 0.75 on these pairs (tests/data/test_synth_difficulty.py checks this setting), while a 0.5 M
# parameter network learns the identities within the demo's few CPU minutes.
NUISANCE = 0.8
SYNTH_ARGS = [
    "--identities", "1000", "--images-per-identity", "24",
    "--val-identities", "400", "--seed", "7", "--nuisance", str(NUISANCE),
]  # fmt: skip
REQUIRED_ACCURACY = 0.95


def facescale(*args: str) -> None:
    print(f"\n$ facescale {shlex.join(args)}", flush=True)
    if subprocess.run([sys.executable, "-m", "facescale.cli.main", *args], cwd=ROOT).returncode:
        raise SystemExit(f"demo stopped: `facescale {args[0]}` failed (its message is above)")


def generate_data() -> None:
    stamp = ROOT / DATA / "demo_args.json"
    if stamp.exists() and json.loads(stamp.read_text()) == SYNTH_ARGS:
        print(f"SynthFace already in {DATA} (delete the folder to regenerate)")
        return
    facescale("synth", DATA, *SYNTH_ARGS)
    stamp.write_text(json.dumps(SYNTH_ARGS))


def random_init_accuracy(backbone: str, embedding_size: int, bin_path: Path) -> float:
    """The demo's backbone, untrained, through the same verification protocol."""
    import torch

    from facescale.eval.sets import load_set
    from facescale.eval.torch_embed import module_embed_fn
    from facescale.eval.verification import evaluate_verification
    from facescale.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone(backbone, embedding_size=embedding_size)
    vset = load_set(str(bin_path))
    return evaluate_verification(module_embed_fn(model), vset.images, vset.issame).accuracy_mean


def main() -> int:
    import yaml

    start = time.perf_counter()
    generate_data()
    synth_done = time.perf_counter()

    if (ROOT / RUN).exists():
        shutil.rmtree(ROOT / RUN)  # the demo always trains from scratch
    facescale("train", "-c", CONFIG)
    train_done = time.perf_counter()

    out = f"{RUN}/eval"
    facescale("eval", RUN, "--bins", f"{DATA}/val.bin", f"{DATA}/val_hard.bin", "--out", out)
    report = json.loads((ROOT / out / "report.json").read_text())
    results = report["models"][0]["verification"]
    model_cfg = yaml.safe_load((ROOT / CONFIG).read_text())["model"]
    print("\nscoring the same backbone at random initialisation on val.bin ...", flush=True)
    baseline = random_init_accuracy(model_cfg["name"], model_cfg["embedding_size"], ROOT / DATA / "val.bin")
    end = time.perf_counter()

    accuracy = results["val"]["accuracy_mean"]
    hard = results["val_hard"]["accuracy_mean"]
    name = model_cfg["name"]
    print("\n== facescale demo: held-out SynthFace verification (10-fold, flip; unseen identities)")
    print(f"{'model':<34}{'val':>10}{'val_hard':>10}")
    print(f"{name + ', random init':<34}{baseline:>10.4f}{'':>10}")
    print(f"{name + ', trained (' + RUN + ')':<34}{accuracy:>10.4f}{hard:>10.4f}")
    train_log = ROOT / RUN / "config.yaml"
    print(
        f"time: synth {synth_done - start:.0f}s, train {train_done - synth_done:.0f}s, "
        f"eval {end - train_done:.0f}s, total {end - start:.0f}s (config: {train_log.relative_to(ROOT)})"
    )
    if accuracy < REQUIRED_ACCURACY:
        print(f"FAILED: trained accuracy {accuracy:.4f} is below {REQUIRED_ACCURACY}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
