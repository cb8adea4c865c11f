#!/usr/bin/env bash
# The measurement pass on the real development pair, before and after, in one run: for each
# `deltaplan` binary given (label=path), analyze the pair once (shared store), then with the
# store's error tables removed time `plan --strategy exact --budget 1/16` (the measurement pass),
# and with the tables cached plan, compress and evaluate exact, greedy and preset:delta-come at
# 1/16 and 1/32, printing actual and predicted totals. The binaries run one after the other.
# Usage: Benchmarks/run-measure-dev.sh OUT label=path/to/deltaplan [label=path ...]
#        PAIR=/path/to/pair THREADS=N (passed as --threads to binaries that take it; default 1)
set -euo pipefail
out=$1; shift
pair=${PAIR:-../shared/pairs/minilm-kjv}
threads=${THREADS:-1}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$out"
first=${1#*=}
store=$out/store
if [ ! -f "$store/manifest.json" ]; then
  "$first" analyze --base "$pair/base" --finetuned "$pair/finetuned" --calibration "$pair/calibration.safetensors" --out "$store" >/dev/null
fi
wall() { grep "Elapsed (wall clock)" "$1" | awk '{print $NF}' | python3 -c 'import sys; p=[float(x) for x in sys.stdin.read().strip().split(":")]; print(sum(v*60**i for i,v in enumerate(reversed(p))))'; }
for spec in "$@"; do
  label=${spec%%=*}; bin=${spec#*=}
  extra=()
  if "$bin" plan --help 2>&1 | grep -q -- '--threads'; then extra=(--threads "$threads"); fi
  rm -rf "$store/errors"
  /usr/bin/time -v "$bin" plan "$store" --budget 1/16 --strategy exact "${extra[@]}" --out "$out/$label-measure.json" \
    > /dev/null 2> "$out/$label-measure.time"
  echo "$label: measurement pass (plan exact 1/16, no cached tables) $(wall "$out/$label-measure.time") s"
  for strategy in exact greedy preset:delta-come; do
    for budget in 1/16 1/32; do
      name="$label-${strategy#preset:}-${budget#1/}"
      if ! "$bin" plan "$store" --budget "$budget" --strategy "$strategy" "${extra[@]}" --out "$out/$name.json" > /dev/null 2> "$out/$name.err"; then
        echo "$name: no plan ($(tail -1 "$out/$name.err"))"; continue
      fi
      rm -rf "$out/$name-art"
      "$bin" compress "$store" --plan "$out/$name.json" "${extra[@]}" --out "$out/$name-art" > /dev/null 2>&1
      "$bin" evaluate --artifact "$out/$name-art" --base "$pair/base" --finetuned "$pair/finetuned" \
        --calibration "$pair/calibration.safetensors" "${extra[@]}" --format json > "$out/$name-eval.json" 2>/dev/null
      python3 - "$out/$name-eval.json" "$name" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["total"]
def f(x): return "—" if x is None else f"{x:.5f}"
print(f"{sys.argv[2]}: actual act. {t['planRelativeError']:.5f}, actual objective {f(t.get('planObjectiveRelativeError'))}, "
      f"predicted {f(t.get('predictedRelativeError'))}, actual/predicted {f(t.get('actualOverPredicted'))}")
PY
    done
  done
done
