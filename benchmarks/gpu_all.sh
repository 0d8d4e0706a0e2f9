#!/usr/bin/env bash
# Every benchmark of issues 7 and 15 on one CUDA GPU, in one prepared run of about 9 minutes on an H100
# (before the scale step, which may take up to 3 more; BUDGET_S cuts what does not fit).
#
#   bash benchmarks/gpu_all.sh [OUT_DIR]      # OUT_DIR: $1, else $OUT, else benchmarks/results/gpu
#
# Steps, in order, each under `timeout` so that one slow step cannot eat the rest:
#   env check (nvidia-smi, torch.cuda, the imports the benchmarks need) -> stops here if CUDA is missing
#   detector_throughput.py  batch 64, fp32, then --amp                 -> detector_throughput-{fp32,amp}.json
#   train_throughput.py     fp32, then --amp bf16 --channels-last      -> train_throughput-{fp32,amp_cl}.json
#   search_index.py         --device cuda, N = 10k and 100k             -> search_index-cuda.json
#   end_to_end.py           --device cuda, if the file exists           -> end_to_end-cuda.json
#   scale.py                --device cuda, N = 100 and 300 videos, and  -> its table and JSON in the log
#                           the chunked metrics / search at Q = 100k,      (`--out -`: a file would be the 9th)
#                           G = 200k, D = 512
#   search_index.py         N = 1M, with whatever time is left          -> search_index-1m-cuda.json
# (The 1M gallery comes last: FAISS IVF training at 1M is the one step whose time is hard to bound;
# its CPU figures are already in benchmarks/results/search_index-cpu.json.)
# Every command and its output go to OUT_DIR/gpu_all.log, a summary (step, exit code, seconds) at its end.
# At most 8 files land in OUT_DIR (the device tool returns no more): 7 JSON files and the log.
#
# Environment: PYTHON (default .venv/bin/python where it exists, else python3); BUDGET_S (default 540):
# total seconds, each step's timeout is cut to what is left and a step with under 30 s left is skipped;
# DRY_RUN=1 prints the commands without running anything. Wheels in .whl/ (packages the GPU image
# lacks: omegaconf, albumentations, pytorch-metric-learning, faiss-cpu and their needs) are
# installed into /tmp/site first and put on PYTHONPATH.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
OUT_DIR="${1:-${OUT:-benchmarks/results/gpu}}"
BUDGET_S="${BUDGET_S:-540}"
DRY_RUN="${DRY_RUN:-0}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_all.log"
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
SUMMARY=()
FAILED=0

log() { echo "[$(date +%H:%M:%S) +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

# step NAME LIMIT_S CMD...: run CMD under `timeout`, at most LIMIT_S and at most what the budget leaves.
step() {
    local name=$1 limit=$2 left rc t0
    shift 2
    left=$((BUDGET_S - ($(date +%s) - START)))
    if ((left < 30)); then
        log "SKIP $name: ${left}s of the ${BUDGET_S}s budget left"
        SUMMARY+=("$name skipped -")
        return 0
    fi
    ((limit > left)) && limit=$left
    log "RUN $name (timeout ${limit}s): $*"
    if [[ "$DRY_RUN" == 1 ]]; then
        SUMMARY+=("$name dry-run 0")
        return 0
    fi
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    ((rc == 124 || rc == 137)) && log "TIMEOUT $name after ${limit}s"
    ((rc != 0)) && FAILED=1
    log "END $name: exit $rc in $(($(date +%s) - t0))s"
    SUMMARY+=("$name $rc $(($(date +%s) - t0))")
}

if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    log "installing the carried wheels in .whl/ into /tmp/site"
    if [[ "$DRY_RUN" != 1 ]]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl 2>&1 | tee -a "$LOG"
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
fi

log "environment: $(uname -srm), python $PYTHON, out $OUT_DIR, budget ${BUDGET_S}s, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ "$DRY_RUN" != 1 ]]; then
    if ! nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"; then
        log "nvidia-smi failed: no NVIDIA driver here"
        exit 2
    fi
    if ! "$PYTHON" - 2>&1 <<'EOF' | tee -a "$LOG"; then
import importlib, sys
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False")
p = torch.cuda.get_device_properties(0)
print(f"GPU 0: {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
missing = []
for mod in ("torchvision", "omegaconf", "albumentations", "pytorch_metric_learning", "faiss", "imagesearch"):
    try:
        m = importlib.import_module(mod)
        print(f"  {mod} {getattr(m, '__version__', '')}")
    except ImportError as exc:
        missing.append(f"{mod} ({exc})")
if missing:
    sys.exit("missing: " + "; ".join(missing) + " -- carry wheels in .whl/ (see the script's header)")
EOF
        log "environment check failed; nothing was run"
        exit 2
    fi
fi

DET=(benchmarks/detector_throughput.py --device cuda --batch 64 --iters 5 --warmup 2)
step detector_fp32 120 "$PYTHON" "${DET[@]}" --out "$OUT_DIR/detector_throughput-fp32.json"
step detector_amp 100 "$PYTHON" "${DET[@]}" --amp --out "$OUT_DIR/detector_throughput-amp.json"

TRAIN=(benchmarks/train_throughput.py --device cuda --iters 10 --warmup 3)
step train_fp32 150 "$PYTHON" "${TRAIN[@]}" --out "$OUT_DIR/train_throughput-fp32.json"
step train_amp_cl 120 "$PYTHON" "${TRAIN[@]}" --amp bf16 --channels-last --out "$OUT_DIR/train_throughput-amp_cl.json"

SEARCH=(benchmarks/search_index.py --device cuda --dim 512 --queries 1000 --k 20 --repeat 3 --budget-s 5)
step search_index 90 "$PYTHON" "${SEARCH[@]}" --sizes 10000 100000 --out "$OUT_DIR/search_index-cuda.json"

if [[ -f benchmarks/end_to_end.py ]]; then
    # Its flags, read from its source (no Python start): another helper owns that file.
    E2E=(benchmarks/end_to_end.py)
    grep -q -- '"--device"' benchmarks/end_to_end.py && E2E+=(--device cuda)
    grep -q -- '"--decode-workers"' benchmarks/end_to_end.py && E2E+=(--decode-workers 8)
    grep -q -- '"--out"' benchmarks/end_to_end.py && E2E+=(--out "$OUT_DIR/end_to_end-cuda.json")
    step end_to_end 120 "$PYTHON" "${E2E[@]}"
else
    log "SKIP end_to_end: benchmarks/end_to_end.py does not exist"
    SUMMARY+=("end_to_end absent -")
fi

# Splits generated by 8 processes (data/bench/scale, reused by a later run on the same machine only).
SCALE=(benchmarks/scale.py --device cuda --sizes 100 300 --workers 8 --decode-workers 8 --out -)
step scale 180 "$PYTHON" "${SCALE[@]}"

step search_index_1m 150 "$PYTHON" "${SEARCH[@]}" --sizes 1000000 --out "$OUT_DIR/search_index-1m-cuda.json"

log "summary (step, exit code, seconds); total $(($(date +%s) - START))s"
for line in "${SUMMARY[@]}"; do
    # shellcheck disable=SC2086  # split "name rc seconds" into three columns
    printf '  %-18s %-8s %s\n' $line | tee -a "$LOG"
done
exit "$FAILED"
