#!/usr/bin/env bash
# Synth benchmark: `deltaplan synth` of LAYERS full-size Llama-2-7B layers (q/k/v/o 4096x4096,
# gate/up 11008x4096, down 4096x11008, plus the 32000x4096 embeddings and lm_head, BF16, calibration
# with 512 tokens), before and after, in one run: the reference is `deltaplan` built from REF
# (default 512ec53, main before the fast synth; REFDIR: a worktree that has it built), run as users
# ran it (OpenBLAS's default threads) and with OPENBLAS_NUM_THREADS=1; the new one is this checkout
# with --threads 1 and with --threads N (each matrix on one BLAS thread). Wall, user and system time and peak RSS from /usr/bin/time -v; the two new runs must
# write byte-identical files.
# Usage: Benchmarks/run-synth.sh [LAYERS]      REF=<commit> REFDIR=<dir> THREADS=<n> Benchmarks/run-synth.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-1}
ref=${REF:-512ec53}
threads=${THREADS:-$(nproc)}
out=Benchmarks/data/synth-L$layers
mkdir -p "$out"
swift build -c release --product deltaplan >/dev/null
bin=$(swift build -c release --show-bin-path)
refdir=${REFDIR:-$(mktemp -d /tmp/deltaplan-ref-XXXXXX)}
if [ ! -x "$refdir/.build/release/deltaplan" ]; then
  git worktree add --detach "$refdir" "$ref" >/dev/null 2>&1 || git -C "$refdir" checkout --detach "$ref"
  (cd "$refdir" && swift build -c release --product deltaplan >/dev/null)
fi
args=(synth --profile llama-2-7b --layers "$layers" --seed 1 --tokens 512)
field() { grep "$2" "$1" | awk -F': ' '{print $2}'; }
run() {  # label binary [options...]; BLAS=1 in the environment runs it on one OpenBLAS thread
  local label=$1 binary=$2; shift 2
  rm -rf "$out/$label"
  if [ -n "${BLAS:-}" ]; then
    OPENBLAS_NUM_THREADS=$BLAS /usr/bin/time -v "$binary" "${args[@]}" "$@" --out "$out/$label" > /dev/null 2> "$out/$label.time"
  else
    /usr/bin/time -v "$binary" "${args[@]}" "$@" --out "$out/$label" > /dev/null 2> "$out/$label.time"
  fi
  (cd "$out/$label" && find . -type f | sort | xargs sha256sum) > "$out/$label.sha256"
  du -sb "$out/$label" | awk '{print $1}' > "$out/$label.bytes"
  rm -rf "${out:?}/$label"
  echo "$label $(field "$out/$label.time" "Elapsed (wall clock)") wall, $(field "$out/$label.time" "User time") s user, $(field "$out/$label.time" "System time") s system, $(( $(field "$out/$label.time" "Maximum resident set size") / 1024 )) MiB peak RSS"
}
uptime
run reference "$refdir/.build/release/deltaplan"
run new-1 "$bin/deltaplan" --threads 1
run "new-$threads" "$bin/deltaplan" --threads "$threads"
BLAS=1 run reference-1blas "$refdir/.build/release/deltaplan"
run new-1-again "$bin/deltaplan" --threads 1
uptime
cmp -s "$out/new-1.sha256" "$out/new-$threads.sha256" && cmp -s "$out/new-1.sha256" "$out/new-1-again.sha256" \
  && echo "--threads 1, $threads and 1 again: byte-identical files" || echo "--threads 1, $threads, 1 again: FILES DIFFER"
python3 - "$out" "$threads" <<'PY'
import sys
out, threads = sys.argv[1], sys.argv[2]
def read(label):
    fields = {}
    for line in open(f"{out}/{label}.time"):
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    parts = [float(p) for p in fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    user, system = float(fields["User time (seconds)"]), float(fields["System time (seconds)"])
    return wall, user, system, int(fields["Maximum resident set size (kbytes)"]) / 1024 / 1024
ref = read("reference")
print("| run | wall (s) | user (s) | system (s) | peak RSS (GiB) | wall ratio | CPU ratio (user + system) | user ratio |")
print("|---|---|---|---|---|---|---|---|")
for label in ["reference", "reference-1blas", "new-1", f"new-{threads}", "new-1-again"]:
    wall, user, system, rss = read(label)
    print(f"| {label} | {wall:.1f} | {user:.1f} | {system:.1f} | {rss:.2f} | {ref[0] / wall:.1f}x | "
          f"{(ref[1] + ref[2]) / (user + system):.1f}x | {ref[1] / user:.1f}x |")
PY
