#!/usr/bin/env bash
# Runs the `svd` benchmark suite (Swift, release) and the scipy/numpy reference, one BLAS thread
# each. Full SVDs are interleaved shape by shape (Swift, scipy, numpy) so that a change in machine
# load hits both sides alike; then the randomized part runs (its own full SVD is the accuracy and
# speed-up reference). Prints time ratios at the end.
#
#   Benchmarks/run-svd.sh [--quick]
#
# OPENBLAS_CORETYPE is deliberately not touched (see MACHINE-NOTES.md).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=(--quick) ;;
        *) echo "unknown option $arg" >&2; exit 2 ;;
    esac
done
if [ ${#quick[@]} -gt 0 ]; then shapes="256x256 512x512 1376x512"; else shapes="1024x1024 4096x4096 11008x4096"; fi

export OPENBLAS_NUM_THREADS=1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
swift build -c release --product deltaplan-bench 2>&1 | tail -1

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for shape in $shapes; do
    .build/release/deltaplan-bench svd "${quick[@]}" --full-only --shape "$shape" | tee -a "$out/swift.txt"
    python3 Benchmarks/svd_reference.py "${quick[@]}" --shape "$shape" | tee -a "$out/python.txt"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
.build/release/deltaplan-bench svd "${quick[@]}" --randomized-only | tee -a "$out/swift.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "ratios (Swift time / reference time; < 1 means Swift is faster)"
awk '
    FNR == 1 { file++ }
    $1 == "RESULT" && file == 1 { swift[$2] = $3 }
    $1 == "RESULT" && file == 2 { ref[$2] = $3 }
    END {
        for (key in swift) {
            if (key !~ /^svd_full_[0-9]/) continue
            shape = substr(key, 10)
            line = sprintf("  full SVD %-11s swift %8.3f s", shape, swift[key])
            if (("scipy_svd_full_" shape) in ref)
                line = line sprintf("  scipy %8.3f s  ratio %.3f", ref["scipy_svd_full_" shape], swift[key] / ref["scipy_svd_full_" shape])
            if (("numpy_svd_full_" shape) in ref)
                line = line sprintf("  numpy %8.3f s  ratio %.3f", ref["numpy_svd_full_" shape], swift[key] / ref["numpy_svd_full_" shape])
            print line
        }
        for (key in swift) {
            if (key !~ /^rsvd_/) continue
            split(key, parts, "_")
            shape = (parts[2] == "decay") ? "decay_" parts[3] : parts[2]
            full = swift["svd_fullref_" shape]
            printf("  %-36s %8.3f s  speed-up vs its full SVD (%.3f s) %.2fx\n", key, swift[key], full, full / swift[key])
        }
    }' "$out/swift.txt" "$out/python.txt" | sort
