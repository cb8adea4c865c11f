#!/usr/bin/env bash
# The whole model (issue #13): synthesizes a LAYERS-layer Llama-2-7B-shaped pair with calibration,
# then runs analyze, plan (exact and preset:delta-come at 1/16), compress (both plans), evaluate
# (both artifacts) and merge (the exact plan's), each under /usr/bin/time -v, and prints a table of
# wall time and peak RSS per stage (also written to WORK/stages.md).
#
# Usage: Benchmarks/run-7b.sh [WORK]          (default /tmp/deltaplan-7b)
# Environment: LAYERS (32), SCALE (1: Llama-2-7B's 4096 / 11008 dimensions), THREADS (--threads of
#   every stage; default nproc), DELTAPLAN (default .build/release/deltaplan, built if missing),
#   KEEP=1 keeps everything (default: the store is removed once both evaluations are done, before
#   the merge, and the merged checkpoint after its stage; the pair, plans and artifacts stay).
#
# Disk: checked before anything is written. At full size and 32 layers it needs about 77 GB at its
# peak (compress and evaluate): the two BF16 checkpoints (27 GB), the calibration Grams (22 GB: q/k/v
# and gate/up share theirs), the store's Float32 factors up to the stored rank (26 GB) and two
# artifacts at 1/16 (2 GB); the merged BF16 checkpoint (13.5 GB) is written after the store is
# removed (with KEEP=1 beside it: about 90 GB). The script prints its estimate for the given LAYERS
# and SCALE and stops when the file system has less free space.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/deltaplan-7b}
layers=${LAYERS:-32} scale=${SCALE:-1} threads=${THREADS:-$(nproc)}
deltaplan=${DELTAPLAN:-.build/release/deltaplan}
[ -x "$deltaplan" ] || swift build -c release --product deltaplan >/dev/null
deltaplan=$(realpath "$deltaplan")
export CI=1

# Bytes each stage writes, from Llama-2-7B's shapes (d = 4096, f = 11008) at SCALE.
need=$(python3 - "$layers" "$scale" "${KEEP:-0}" <<'PY'
import sys
layers, scale = int(sys.argv[1]), float(sys.argv[2])
d, f = round(4096 * scale), round(11008 * scale)
shapes = [(d, d)] * 4 + [(f, d)] * 2 + [(d, f)]            # q, k, v, o, gate, up, down: (h_out, h_in)
params = sum(m * n for m, n in shapes)
rank = lambda m, n: m * n // (m + n)
checkpoints = 2 * 2 * params                              # base and fine-tuned, BF16
grams = 4 * (3 * d * d + f * f)                           # q/k/v, o, gate/up, down: Float32 h_in²
store = sum(4 * (m + n) * rank(m, n) + 8 * 4 * rank(m, n) for m, n in shapes)
artifacts = 2 * 2 * params // 16                          # two plans at 1/16 of the BF16 delta
merged = 2 * params
keep = len(sys.argv) > 3 and sys.argv[3] == "1"
peak = checkpoints + grams + store + artifacts + merged if keep else max(
    checkpoints + grams + store + artifacts,                  # up to the evaluations
    checkpoints + grams + artifacts + merged)                 # the merge, the store removed
print(layers * peak)
PY
)
mkdir -p "$work"
free=$(df -B1 --output=avail "$work" | tail -1)
echo "disk: this run writes about $((need / 1000000000)) GB in $work; $((free / 1000000000)) GB are free"
if [ "$free" -lt "$need" ]; then
    echo "not enough free space: need about $((need / 1000000000)) GB (fewer LAYERS or a smaller SCALE need less)" >&2
    exit 1
fi

pair=$work/pair store=$work/store
table=$work/stages.md
rm -f "$work/seconds"
echo "| stage | wall | peak RSS |" >"$table"
echo "|---|---|---|" >>"$table"
stage() {  # NAME COMMAND...: runs it under /usr/bin/time -v, appends its row
    local name=$1
    shift
    echo "== $name: $*"
    if ! /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.log" 2>&1; then
        tail -n 20 "$work/$name.log" >&2
        echo "$name failed (its output: $work/$name.log)" >&2
        exit 1
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$name.time")
    echo "$wall" | awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s}' >>"$work/seconds"
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.2f GiB", $2 / 1048576}' "$work/$name.time")
    echo "| $name | $wall | $rss |" | tee -a "$table"
}

[ -f "$pair/calibration.safetensors" ] || stage synth "$deltaplan" synth --profile llama-2-7b --scale "$scale" \
    --layers "$layers" --seed 1 --tokens 512 --threads "$threads" --out "$pair"
rm -rf "$store"
stage analyze "$deltaplan" analyze --base "$pair/base" --finetuned "$pair/finetuned" \
    --calibration "$pair/calibration.safetensors" --threads "$threads" --out "$store"
# The first plan runs the measurement pass; the second reads its cached tables.
stage plan-exact "$deltaplan" plan "$store" --budget 1/16 --strategy exact --threads "$threads" --out "$work/exact.json"
stage plan-delta-come "$deltaplan" plan "$store" --budget 1/16 --strategy preset:delta-come --scope type \
    --threads "$threads" --out "$work/delta-come.json"
for p in exact delta-come; do
    rm -rf "$work/artifact-$p"
    stage "compress-$p" "$deltaplan" compress "$store" --plan "$work/$p.json" --threads "$threads" --out "$work/artifact-$p"
    stage "evaluate-$p" "$deltaplan" evaluate --artifact "$work/artifact-$p" --base "$pair/base" --finetuned "$pair/finetuned" \
        --threads "$threads" --format json
    grep -o '"planRelativeError" *: *[0-9.e-]*' "$work/evaluate-$p.log" | head -1 | sed "s/^/$p: /"
done
[ "${KEEP:-0}" = 1 ] || rm -rf "$store"
rm -rf "$work/merged"
stage merge "$deltaplan" merge --base "$pair/base" --artifact "$work/artifact-exact" --dtype bf16 --out "$work/merged"
[ "${KEEP:-0}" = 1 ] || rm -rf "$work/merged"

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg); $layers layers at scale $scale, --threads $threads"
awk '{s += $1} END {printf "| total | %d:%02d:%02d |  |\n", s / 3600, s % 3600 / 60, s % 60}' "$work/seconds" >>"$table"
cat "$table"
