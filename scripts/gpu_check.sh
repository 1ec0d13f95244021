#!/usr/bin/env bash
# facescale on one GPU in about 10 minutes: every figure comes from the project's own commands.
#
#     bash scripts/gpu_check.sh                     # from the project root, a CUDA torch in .venv
#     BUDGET_S=540 OUT=/tmp/gpu_check CAP_GIB=78.5 bash scripts/gpu_check.sh
#
#   1. environment (torch, CUDA, GPU, compute capability)
#   2. the CUDA-only tests: head parity CUDA vs CPU (float64, lean bf16, offload), host syncs of a
#      sparse step (torch.cuda.set_sync_debug_mode), matmul dtype error bounds, sampling on CUDA,
#      precision policy; device augmentation / DALI when present
#   3. `facescale bench head --device cuda --json` at 1M (all modes) and 10M classes
#   4. whole training steps, r50 at batch 128 (bf16) in front of the head: facescale sparse fp32 and
#      lean bf16 beside arcface_torch's PartialFC_V2 + SGD (`bench head --backbone r50`): samples/s,
#      peak memory, host syncs per step
#   5. the largest class count beside that r50 with the allocator capped at CAP_GIB (78.5 GiB: what
#      PyTorch gets on an 80 GB GPU), lean bf16 vs the arcface baseline, by bisection (a process each)
#   6. end to end through the CLI on a small SynthFace set: train bf16, resume, eval, ONNX export,
#      and fp16 + host offload
# Results: $OUT/results.jsonl (one JSON line per bench row), logs in $OUT/logs, summary at the end.
set -u -o pipefail

ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-/tmp/facescale_gpu_check}
BUDGET_S=${BUDGET_S:-570}
CAP_GIB=${CAP_GIB:-78.5}
START=$(date +%s)
LOGS=$OUT/logs
RES=$OUT/results.jsonl
STEPS=$OUT/steps.tsv
FS=("$PY" -m facescale.cli.main)

if [ ! -f "$ROOT/src/facescale/__init__.py" ]; then
    echo "run this from the facescale project root (src/facescale not found in $ROOT)" >&2
    exit 2
fi
rm -rf "$OUT"
mkdir -p "$LOGS"
: > "$RES"
: > "$STEPS"
export PYTHONUNBUFFERED=1

left() { echo $((START + BUDGET_S - $(date +%s))); }

# step NAME TIMEOUT MIN_LEFT CMD...: run CMD under a timeout, log it, record ok/FAIL/timeout/skipped.
step() {
    local name=$1 limit=$2 need=$3
    shift 3
    local remaining
    remaining=$(left)
    if [ "$remaining" -lt "$need" ]; then
        printf '%s\tskipped\t-\t0\tno time left (%ss)\n' "$name" "$remaining" >> "$STEPS"
        return 99
    fi
    [ "$limit" -gt $((remaining - 3)) ] && limit=$((remaining - 3))
    local t0 rc status note=""
    t0=$(date +%s)
    echo "[run ] $name (timeout ${limit}s, ${remaining}s left)"
    timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status=timeout; note="killed after ${limit}s" ;;
        *) status=FAIL; note=$(grep -v -e '^\s*$' -e '^{' "$LOGS/$name.log" | tail -1 | cut -c1-90 | tr '\t' ' ') ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" $(( $(date +%s) - t0 )) "$note" >> "$STEPS"
    echo "[$status] $name $note"
    grep '^{' "$LOGS/$name.log" | sed "s/^{/{\"step\": \"$name\", /" >> "$RES"
    return $rc
}

# ----------------------------------------------------------------------------------- 1. environment
"$PY" - > "$OUT/env.txt" 2>&1 <<'PYEOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB, "
          f"{torch.cuda.device_count()} visible")
PYEOF
cat "$OUT/env.txt"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "this torch sees no CUDA GPU: install a CUDA build into .venv first" >&2
    exit 2
fi

# --------------------------------------------------------------------------------- 2. CUDA-only tests
step pytest_cuda 150 40 "$PY" -m pytest -q -p no:cacheprovider -rs \
    tests/heads/test_partial_fc_cuda.py tests/heads/test_matmul.py tests/heads/test_sampling.py \
    tests/train/test_precision.py tests/data/test_device_augment.py

# ------------------------------------------------------------------------ 3. bench head, head alone
step bench_1M 150 40 "${FS[@]}" bench head --device cuda --classes 1000000 --steps 5 --warmup 2 --json
step bench_10M 150 40 "${FS[@]}" bench head --device cuda --classes 10000000 --steps 5 --warmup 2 \
    --modes sparse,sparse-bf16,offload-bf16,arcface --json

# ------------------------------------------------------- 4. whole training steps, r50 @ 128 in front
step train_step_r50_1M 150 40 "${FS[@]}" bench head --device cuda --backbone r50 --batch 128 \
    --classes 1000000 --modes sparse,sparse-bf16,arcface --steps 10 --warmup 3 --json

# ------------------------------------------- 5. largest class count beside r50 @ 128 (bisection)
probe() {  # probe MODE MILLIONS: 0 fits, 1 out of memory (or failed)
    local mode=$1 millions=$2
    step "probe_${mode}_${millions}M" 75 25 "${FS[@]}" bench head --device cuda --backbone r50 --batch 128 \
        --classes $((millions * 1000000)) --modes "$mode" --memory-cap-gb "$CAP_GIB" --steps 1 --warmup 1 --json
    grep -q '"status": "ok"' "$LOGS/probe_${mode}_${millions}M.log" 2>/dev/null
}
bisect() {  # bisect MODE LO HI PROBES (millions of classes; LO assumed to fit, HI assumed not to)
    local mode=$1 lo=$2 hi=$3 budget=$4 mid
    while [ "$budget" -gt 0 ] && [ $((hi - lo)) -gt 1 ] && [ "$(left)" -gt 30 ]; do
        mid=$(((lo + hi) / 2))
        if probe "$mode" "$mid"; then lo=$mid; else hi=$mid; fi
        budget=$((budget - 1))
    done
    printf 'capacity\t%s\t-\t0\tfits %sM, fails %sM (under %s GiB)\n' "$mode" "$lo" "$hi" "$CAP_GIB" >> "$STEPS"
}
# Upper bounds from the state alone: 2048 B/class lean, 6144 B/class arcface_torch.
bisect sparse-bf16 4 "$("$PY" -c "print(int($CAP_GIB * 2**30 / 2048 / 1e6) + 1)")" 5
bisect arcface 1 "$("$PY" -c "print(int($CAP_GIB * 2**30 / 6144 / 1e6) + 1)")" 4

# ----------------------------------------------------------------------- 6. end to end through the CLI
SYN=$OUT/synth
if step synth 120 40 "${FS[@]}" synth "$SYN" --identities 300 --images-per-identity 12 \
        --val-identities 60 --val-pairs 300 --no-hard-pairs --workers 8; then
    COMMON=(-c configs/synth_demo.yaml -o "data.root=$SYN" -o model.name=r18 -o model.embedding_size=512
            -o data.batch_size=128 -o data.num_workers=6 -o train.device=cuda -o train.log_every=10
            -o "eval.bins=[$SYN/val.bin]" -o train.tensorboard=false -o train.progress=false
            -o head.sample_rate=0.5)
    if step train_bf16 150 45 "${FS[@]}" train "${COMMON[@]}" -o train.max_steps=40 -o train.save_every=20 \
            -o "train.output=$OUT/run_bf16"; then
        step resume_bf16 120 35 "${FS[@]}" train --resume "$OUT/run_bf16" -o train.max_steps=50
        step eval_cuda 120 30 "${FS[@]}" eval "$OUT/run_bf16" --bins "$SYN/val.bin" --device cuda \
            --out "$OUT/eval_bf16"
        step export_onnx 120 30 "${FS[@]}" export "$OUT/run_bf16" --out "$OUT/run_bf16/model.onnx"
    fi
    step train_fp16_offload 150 45 "${FS[@]}" train "${COMMON[@]}" -o train.precision=fp16 \
        -o head.offload=true -o head.weight_dtype=bfloat16 -o head.momentum_dtype=bfloat16 \
        -o head.sample_rate=0.3 -o train.max_steps=30 -o "train.output=$OUT/run_fp16_offload"
fi

# ------------------------------------------------------------------------------------------ summary
{
    echo "== steps"
    column -t -s $'\t' "$STEPS"
    echo
    echo "== bench rows (classes, mode, status, ms/step, samples/s at batch 128 for the r50 rows, peak B/class, syncs/step)"
    "$PY" - "$RES" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    rate = f"{128_000 / r['ms_per_step']:.0f}/s" if r.get("ms_per_step") and r["step"].startswith(("train", "probe")) else "-"
    print(f"{r['step']:<28} {r['classes']:>11,} {r['mode']:<13} {r['status']:<8} "
          f"{r['ms_per_step'] or '-':>9} {rate:>8} {r['peak_bytes_per_class'] or '-':>9} {r['host_syncs_per_step']}")
PYEOF
} | tee "$OUT/summary.txt"
echo "total $(( $(date +%s) - START ))s; everything is under $OUT"
awk -F'\t' '$2 == "FAIL" || $2 == "timeout" { bad = 1 } END { exit bad ? 0 : 1 }' "$STEPS" && exit 1
exit 0
