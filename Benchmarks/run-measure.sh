#!/usr/bin/env bash
# Measurement-pass benchmark: the error model's measurement pass (`deltaplan plan STORE`, no cached
# tables) on the store of Benchmarks/run-analyze.sh (LAYERS full-size Llama-2-7B layers), per
# matrix, before and after, in one run: the reference is `deltaplan` built from REF (default: 7fad6c6,
# main before the chunked measurement; REFDIR: a worktree that has it built), the new one is this checkout.
# Then the new pass with one thread, with N threads (N matrices at once) and with one matrix at
# a time on N BLAS threads (deltaplan-bench measure), each with its peak RSS.
# Usage: Benchmarks/run-measure.sh [LAYERS]   (run Benchmarks/run-analyze.sh LAYERS first)
#        REF=<commit> THREADS=<n> Benchmarks/run-measure.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-1}
ref=${REF:-7fad6c6}
threads=${THREADS:-$(nproc)}
data=Benchmarks/data/llama-2-7b-L$layers
store=$data/store
export OPENBLAS_NUM_THREADS=1
swift build -c release --product deltaplan >/dev/null
swift build -c release --product deltaplan-bench >/dev/null
bin=$(swift build -c release --show-bin-path)
refdir=${REFDIR:-$(mktemp -d /tmp/deltaplan-ref-XXXXXX)}
if [ ! -x "$refdir/.build/release/deltaplan" ]; then
  git worktree add --detach "$refdir" "$ref" >/dev/null 2>&1 || git -C "$refdir" checkout --detach "$ref"
  (cd "$refdir" && swift build -c release --product deltaplan >/dev/null)
fi
seconds() { grep "Elapsed (wall clock)" "$1" | awk '{print $NF}' | python3 -c 'import sys; p=[float(x) for x in sys.stdin.read().strip().split(":")]; print(sum(v*60**i for i,v in enumerate(reversed(p))))'; }
rss() { echo $(( $(grep "Maximum resident set size" "$1" | awk '{print $NF}') / 1024 )); }
run_plan() {  # label binary [options...]
  local label=$1 binary=$2; shift 2
  rm -rf "$store/errors"
  /usr/bin/time -v "$binary" plan "$store" --budget 1/16 --strategy preset:delta-come --scope type "$@" \
    --out "$data/plan-$label.json" > "$data/plan-$label.out" 2> "$data/plan-$label.time"
  echo "$label: $(seconds "$data/plan-$label.time") s, peak RSS $(rss "$data/plan-$label.time") MiB"
}
matrices=$(python3 -c "import json; print(len(json.load(open('$store/manifest.json'))['matrices']))")
run_plan reference "$refdir/.build/release/deltaplan"
run_plan new-1-thread "$bin/deltaplan" --threads 1
grep -E "measure: \[" "$data/plan-new-1-thread.time" | sed 's/^/  new, 1 thread: /' || true
run_plan "new-$threads-threads" "$bin/deltaplan" --threads "$threads"
rm -rf "$store/errors"
/usr/bin/time -v "$bin/deltaplan-bench" measure "$store" --threads 1 --blas-threads "$threads" > "$data/measure-blas.out" 2> "$data/measure-blas.time"
cat "$data/measure-blas.out"; echo "BLAS threads $threads: peak RSS $(rss "$data/measure-blas.time") MiB"
for label in reference new-1-thread "new-$threads-threads"; do
  cmp -s <(python3 -c "import json,sys; p=json.load(open('$data/plan-reference.json')); print(p['matrices'] and [m['segments'] for m in p['matrices']])") \
         <(python3 -c "import json,sys; p=json.load(open('$data/plan-$label.json')); print(p['matrices'] and [m['segments'] for m in p['matrices']])") \
    && echo "$label: same segments as the reference plan" || echo "$label: segments differ from the reference plan"
done
python3 - "$data" "$matrices" "$threads" <<'PY'
import re, sys
data, n, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def wall(label):
    text = open(f"{data}/plan-{label}.time").read()
    parts = [float(p) for p in re.search(r"Elapsed \(wall clock\).*: (\S+)", text).group(1).split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
ref, one, many = wall("reference"), wall("new-1-thread"), wall(f"new-{threads}-threads")
print(f"per matrix: reference {ref / n:.1f} s, new {one / n:.1f} s (1 thread), {many / n:.1f} s ({threads} threads)")
print(f"reference / new (1 thread) = {ref / one:.2f}; 1 thread / {threads} threads = {one / many:.2f}")
PY
