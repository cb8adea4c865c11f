#!/usr/bin/env bash
# Analyze benchmark: a full-scale Llama-2-7B-shaped synthetic pair (LAYERS layers of the real
# 4096 / 11008 dimensions, BF16), analyzed with calibration; wall time and peak RSS of
# `deltaplan analyze`, against the same SVDs timed alone (deltaplan-bench analyze-svd) in the same run.
# Usage: Benchmarks/run-analyze.sh [LAYERS]   (default 1; 32 is the whole model, ~27 GB of checkpoints)
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-1}
data=Benchmarks/data/llama-2-7b-L$layers
export OPENBLAS_NUM_THREADS=1
swift build -c release --product deltaplan >/dev/null
swift build -c release --product deltaplan-bench >/dev/null
bin=$(swift build -c release --show-bin-path)
if [ ! -f "$data/calibration.safetensors" ]; then
  "$bin/deltaplan" synth --profile llama-2-7b --layers "$layers" --seed 1 --tokens 512 --out "$data"
fi
rm -rf "$data/store"
/usr/bin/time -v "$bin/deltaplan" analyze --base "$data/base" --finetuned "$data/finetuned" \
  --calibration "$data/calibration.safetensors" --out "$data/store" 2> "$data/analyze.time"
wall=$(grep "Elapsed (wall clock)" "$data/analyze.time" | awk '{print $NF}')
rss=$(grep "Maximum resident set size" "$data/analyze.time" | awk '{print $NF}')
svd=$("$bin/deltaplan-bench" analyze-svd "$data/base" "$data/finetuned" | tee /dev/stderr | awk '/RESULT svd_total/ {print $3}')
python3 - "$wall" "$rss" "$svd" <<'PY'
import sys
wall, rss_kb, svd = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
parts = [float(p) for p in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print(f"analyze wall {seconds:.1f} s, peak RSS {rss_kb / 1024 / 1024:.2f} GiB")
print(f"SVDs alone {svd:.1f} s; analyze / SVDs = {seconds / svd:.2f}")
PY
