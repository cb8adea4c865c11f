#!/usr/bin/env bash
# Compress benchmark: the store of Benchmarks/run-analyze.sh (LAYERS full-size Llama-2-7B layers),
# planned with preset:delta-come at α = 1/16 (per-type scope, artifact accounting), compressed with
# GPTQ: wall time and peak RSS of `plan` (its measurement pass) and of `compress`, and the
# artifact's size against the plan and against the paper's 1/16 claim.
# ORDER is the segment order of the measurement pass and of compress: feedback (default) or paper.
# Usage: Benchmarks/run-compress.sh [LAYERS] [ORDER]   (run Benchmarks/run-analyze.sh LAYERS first)
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-1}
order=${2:-feedback}
data=Benchmarks/data/llama-2-7b-L$layers
export OPENBLAS_NUM_THREADS=1
swift build -c release --product deltaplan >/dev/null
bin=$(swift build -c release --show-bin-path)
/usr/bin/time -v "$bin/deltaplan" plan "$data/store" --budget 1/16 --strategy preset:delta-come --scope type \
  --order "$order" --out "$data/plan.json" > "$data/plan.out" 2> "$data/plan.time"
rm -rf "$data/artifact"
/usr/bin/time -v "$bin/deltaplan" compress "$data/store" --plan "$data/plan.json" --order "$order" --out "$data/artifact" \
  > "$data/compress.out" 2> "$data/compress.time"
for step in plan compress; do
  wall=$(grep "Elapsed (wall clock)" "$data/$step.time" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$data/$step.time" | awk '{print $NF}')
  echo "$step: wall $wall, peak RSS $((rss / 1024)) MiB"
done
python3 - "$data" <<'PY'
import json, os, sys
data = sys.argv[1]
plan = json.load(open(f"{data}/plan.json"))
totals = json.load(open(f"{data}/artifact/manifest.json"))["totals"]
bits, dense = plan["totals"]["storageBits"], plan["totals"]["denseBits"]
planned, carried = totals["plannedBytes"], totals["carriedBytes"]
print(f"plan storage {bits / 8 / 2**20:.2f} MiB (alpha {plan['totals']['alpha']:.5f}); dense F16 deltas {dense / 8 / 2**20:.2f} MiB")
print(f"planned tensors {planned / 2**20:.2f} MiB = {planned * 8 / bits:.5f} x plan storage = {planned * 8 / dense:.5f} of the F16 deltas (paper: 1/16 = 0.0625)")
print(f"carried tensors {carried / 2**20:.2f} MiB; delta.safetensors {os.path.getsize(f'{data}/artifact/delta.safetensors') / 2**20:.2f} MiB")
PY
