#!/usr/bin/env bash
# A sharded analyze (`--shard I/N`, the shards run at once, then `--finalize`) against one process
# on the same pair, alternating, each twice; checks that every store is byte-identical to the
# single process's. Prints wall and CPU time per run (GNU time) and the ratios.
#
# Usage: Benchmarks/run-shards.sh [WORK]      (default /tmp/deltaplan-shards)
# Environment: DELTAPLAN (default .build/release/deltaplan), SHARDS (4), THREADS (per shard, 1),
#   PROFILE (llama-2-7b), SCALE (0.25), LAYERS (4), TOKENS (512)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/deltaplan-shards}
deltaplan=$(realpath "${DELTAPLAN:-.build/release/deltaplan}")
shards=${SHARDS:-4} threads=${THREADS:-1} cores=$(nproc)
export CI=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$work"
pair=$work/pair
[ -f "$pair/calibration.safetensors" ] || "$deltaplan" synth --profile "${PROFILE:-llama-2-7b}" --scale "${SCALE:-0.25}" \
    --layers "${LAYERS:-4}" --seed 5 --tokens "${TOKENS:-512}" --out "$pair" >/dev/null
inputs=(--base "$pair/base" --finetuned "$pair/finetuned" --calibration "$pair/calibration.safetensors")
timed() {  # LABEL COMMAND...: wall and user+system seconds
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$work/time.$1" "${@:2}" >/dev/null
    end=$(date +%s.%N)
    echo "$1 $(echo "$end - $start" | bc) $(awk '{print $1 + $2}' "$work/time.$1")"
}
sharded() {
    local pids=() i
    for i in $(seq 1 "$shards"); do
        "$deltaplan" analyze "${inputs[@]}" --out "$work/sharded" --shard "$i/$shards" --threads "$threads" >/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    "$deltaplan" analyze --finalize "$work/sharded" >/dev/null
}
echo "machine: $cores cores, load $(cut -d' ' -f1-3 /proc/loadavg); $shards shards × --threads $threads against one process --threads $cores"
results=()
for round in 1 2; do
    rm -rf "$work/whole" "$work/sharded"
    results+=("$(timed "whole-$round" "$deltaplan" analyze "${inputs[@]}" --out "$work/whole" --threads "$cores")")
    # GNU time measures the shell running the shards: its children's CPU time is included.
    results+=("$(timed "sharded-$round" bash -c "$(declare -f sharded); deltaplan=$deltaplan shards=$shards threads=$threads work=$work; inputs=($(printf '%q ' "${inputs[@]}")); sharded")")
    diff -r "$work/whole" "$work/sharded" >/dev/null || { echo "round $round: the sharded store differs from the single process's" >&2; exit 1; }
done
printf '%s\n' "${results[@]}" | awk '
    { wall[$1] = $2; cpu[$1] = $3; print $1 ": wall " $2 " s, CPU " $3 " s" }
    END { for (r = 1; r <= 2; r++) printf "round %d: sharded / whole: wall %.2f, CPU %.2f\n", r, wall["sharded-" r] / wall["whole-" r], cpu["sharded-" r] / cpu["whole-" r] }'
echo "every sharded store is byte-identical to the single process's"
