#!/usr/bin/env bash
# One GPU benchmark run (issue 16): on full-size random SD-1.5 and SDXL shapes (bench/shapes.py, nothing
# downloaded), on one CUDA GPU, within 8 minutes:
#   1. training: our trainer against the diffusers-style loop at equal precision (bf16)   bench/train.py
#      (SD-1.5 512 px: plain and torch.compile'd; SDXL 1024 px: plain)
#   2. LoRA swap cost against a 20-step render (SD-1.5 512 px, SDXL 1024 px)            bench/swap.py
#   3. a mixed-member batch of 4 against four sequential renders                         bench/batch.py --full
# Prints one JSON line per figure (a piece that fails or runs out of its time prints {"figure": ..., "error": ...};
# a missing bench/batch.py prints {"figure": "batch", "missing": ...}) and writes docs/benchmarks/gpu.md from them.
#
#   bench/gpu.sh                # on the GPU machine
#   bench/gpu.sh --dry          # the same pieces on the tiny models on a CPU, a few steps (tests/bench/test_gpu_sh.py)
#   bench/gpu.sh --out FILE.md  # write the report elsewhere
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry) dry=1 ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench/gpu.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "${PYTHON:-}" ]; then py="$PYTHON"; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
if [ "$dry" = 1 ]; then
    device=cpu; flag=--dry; scale=4   # pieces get 4x their GPU time limit on a (shared) CPU
    out="${out:-${TMPDIR:-/tmp}/photogen-gpu-dry.md}"
else
    device=cuda; flag=""; scale=1
    out="${out:-docs/benchmarks/gpu.md}"
fi
lines="$(mktemp)"
log="$(mktemp)"
started=$(date +%s)
trap 'rm -f "$lines"' EXIT

# piece NAME SECONDS COMMAND...: run it under a time limit; keep its JSON lines; say so when it fails.
piece() {
    local name="$1" limit=$(( $2 * scale )); shift 2
    echo "== $name ($*; at most ${limit} s)" >>"$log"
    timeout --kill-after=10 "$limit" "$@" 2>>"$log" | grep --line-buffered '^{' | tee -a "$lines"
    local status=${PIPESTATUS[0]}
    if [ "$status" != 0 ]; then
        local why="exit status $status"
        [ "$status" = 124 ] && why="ran past its ${limit} s"
        printf '{"figure": "%s", "error": "%s", "log": "%s"}\n' "$name" "$why" "$log" | tee -a "$lines"
    fi
}

# compiling costs minutes on a CPU: the dry run checks the plain path (a test checks compile's wiring)
if [ "$dry" = 1 ]; then sd15=both_bf16; else sd15=both_bf16,both_bf16_compiled; fi
piece train_sd15 150 "$py" bench/train.py --device "$device" --model sd15 --comparisons "$sd15" $flag
piece train_sdxl 130 "$py" bench/train.py --device "$device" --model sdxl --comparisons both_bf16 $flag
piece lora_swap_sd15 45 "$py" bench/swap.py --device "$device" --model sd15 $flag
piece lora_swap_sdxl 75 "$py" bench/swap.py --device "$device" --model sdxl $flag
if [ -f bench/batch.py ]; then
    if [ "$dry" = 1 ]; then
        piece batch 80 "$py" bench/batch.py --device "$device" --quick --runs 1
    else
        piece batch 80 "$py" bench/batch.py --device "$device" --full
    fi
else
    echo '{"figure": "batch", "missing": "bench/batch.py is not in this checkout: no mixed-member batch figure"}' \
        | tee -a "$lines"
fi

"$py" bench/gpu_report.py "$lines" "$out" --seconds $(( $(date +%s) - started )) \
    --command "bench/gpu.sh${flag:+ $flag}" --device "$device"
echo "bench/gpu.sh: $(grep -c '^{' "$lines") figure lines; report $out; stderr of the pieces in $log" >&2
