#!/usr/bin/env bash
# Fuzzes DeltaPlan's readers of hostile input with libFuzzer (Linux, Swift 6):
#   safetensors  SafetensorsFile(contentsOf:): header framing, JSON parser, entries, tiling, reads
#   plan         Plan.decode (what Plan.read runs on a plan file's bytes), then a round trip
#   manifest     Artifact(at:) on an artifact directory whose manifest.json is the input
#
# Usage: Fuzz/run.sh [TARGET...]            (default: all three, one after the other)
#        Fuzz/run.sh --coverage [TARGET...] line coverage of the readers by the seeds and the corpus
#                                           a run left (a build with -profile-generate in .build-cov)
# Environment:
#   FUZZ_RUNS=N        executions per target (default 10000000)
#   FUZZ_TIME=S        stop a target after S seconds whatever FUZZ_RUNS says (default 0: no limit)
#   FUZZ_WORK=DIR      seeds, corpora, logs and findings (default Fuzz/.work, ignored by git)
#   FUZZ_REAL_PAIR=DIR a real checkpoint pair whose safetensors headers join the seeds
#                      (default /work/shared/pairs/minilm-kjv when it exists; only headers are copied)
#   FUZZ_ARGS="..."    extra libFuzzer flags (e.g. -jobs, -only_ascii=1)
#
# Steps: builds `deltaplan` (debug) and makes the seed corpus from real files once (seeded
# synthetic pairs at 1/128 and 1/32 scale, their stores, plans of every strategy, artifacts of both
# quantizers, the real pair's headers: small files, for fast executions); builds the harnesses in
# Fuzz/.build (release, -sanitize=fuzzer,address); runs
# each target from its seeds and past findings (Fuzz/regressions/TARGET), new inputs kept in
# FUZZ_WORK/corpus/TARGET, crashes in
# FUZZ_WORK/findings/TARGET/, the log in FUZZ_WORK/logs/TARGET.log. Exit status: non-zero when a
# target found a crash, a leak or a timeout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=${FUZZ_WORK:-$here/.work}
runs=${FUZZ_RUNS:-10000000}
seconds=${FUZZ_TIME:-0}
real_pair=${FUZZ_REAL_PAIR:-/work/shared/pairs/minilm-kjv}
coverage=0
if [ "${1:-}" = --coverage ]; then coverage=1; shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors plan manifest)
export CI=1  # no progress lines from deltaplan while making seeds
# A trap is reported by libFuzzer (deadly signal, input saved), not by Swift's backtracer under ASan;
# the one leak outside DeltaPlan's code is suppressed (Fuzz/lsan.supp).
export SWIFT_BACKTRACE=enable=no LSAN_OPTIONS=suppressions=$here/lsan.supp

seeds=$work/seeds
if [ ! -f "$seeds/.complete" ]; then
    echo "== seeds: building deltaplan and making real files in $work/files"
    (cd "$root" && swift build --product deltaplan >/dev/null)
    deltaplan=$(cd "$root" && swift build --show-bin-path)/deltaplan
    files=$work/files
    rm -rf "$files" "$seeds"
    mkdir -p "$files" "$seeds"/{safetensors,plan,manifest}
    # Small real files keep executions fast: a one-layer Llama-2-7B-shaped BF16 pair at 1/128 scale
    # (32 × 32 and 86 × 32 matrices, 58 KB per checkpoint) and a two-shard F16 BERT pair at 1/32.
    "$deltaplan" synth --profile llama-2-7b --scale 0.0078125 --layers 1 --seed 7 --tokens 32 --out "$files/pair" >/dev/null
    "$deltaplan" synth --profile bert-base --scale 0.03125 --layers 1 --seed 8 --tokens 32 --dtype F16 \
        --shard-size 40000 --out "$files/bert" >/dev/null
    analyze() { "$deltaplan" analyze --base "$files/pair/base" --finetuned "$files/pair/finetuned" "$@" >/dev/null; }
    analyze --calibration "$files/pair/calibration.safetensors" --out "$files/store"
    analyze --calibration "$files/pair/calibration.safetensors" --include 'self_attn.q_proj' --out "$files/store-q"
    analyze --include 'q_proj|down_proj' --max-rank 8 --out "$files/store-datafree"
    n=0
    plan() { n=$((n + 1)); "$deltaplan" plan "$@" --out "$files/plan-$n.json" >/dev/null; }
    plan "$files/store" --budget 1/8                                                        # 1: exact
    plan "$files/store" --budget 1/4 --strategy greedy                                      # 2
    plan "$files/store" --budget 1/4 --strategy genetic --seed 3                            # 3
    plan "$files/store" --budget 1/2 --strategy preset:delta-come --order paper             # 4
    plan "$files/store" --budget 1.0bpp --strategy preset:single-2 --scope global --bits 8,2,0  # 5
    plan "$files/store" --budget 1/4 --strategy preset:low-rank                             # 6
    plan "$files/store-datafree" --budget 1/4 --strategy exact --bits 16,4,1,0              # 7
    plan "$files/store-q" --budget 1/4                                                      # 8
    plan "$files/store" --budget 1/4 --pin 'q_proj=keep' --pin 'down_proj=8:2,3:8,2:fill' --pin 'o_proj=drop' \
        --bits-for 'gate_proj=8,4,0'                                                        # 9: overrides, pins
    compress() { "$deltaplan" compress "$@" >/dev/null; }
    compress "$files/store-q" --plan "$files/plan-8.json" --out "$files/artifact-q"        # the manifest target's directory
    compress "$files/store-datafree" --plan "$files/plan-7.json" --out "$files/artifact-datafree"
    compress "$files/store-q" --plan "$files/plan-8.json" --method rtn --order paper --out "$files/artifact-rtn" 2>/dev/null
    compress "$files/store" --plan "$files/plan-9.json" --out "$files/artifact-pins"        # a dense (kept) matrix

    # safetensors: real files up to 64 KiB whole; larger ones (and the real pair's) as their header alone.
    header_only() {  # FILE OUT: the 8-byte length and the JSON header, no data
        local length
        length=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
        head -c $((8 + length)) "$1" >"$2"
    }
    i=0
    while IFS= read -r f; do
        i=$((i + 1))
        if [ "$(stat -c %s "$f")" -le 65536 ]; then cp "$f" "$seeds/safetensors/file-$i.safetensors"
        else header_only "$f" "$seeds/safetensors/header-$i.safetensors"; fi
    done < <(find "$files" -name '*.safetensors' -type f | sort)
    if [ -d "$real_pair" ]; then
        while IFS= read -r f; do
            i=$((i + 1))
            header_only "$f" "$seeds/safetensors/real-header-$i.safetensors"
        done < <(find "$real_pair" -name '*.safetensors' -type f | sort)
    fi
    cp "$files"/plan-*.json "$seeds/plan/"
    for a in "$files"/artifact-*; do cp "$a/manifest.json" "$seeds/manifest/$(basename "$a").json"; done
    touch "$seeds/.complete"
fi
for t in safetensors plan manifest; do
    echo "seeds/$t: $(find "$seeds/$t" -type f | wc -l) files, $(du -sb "$seeds/$t" | cut -f1) bytes"
done

# The files each harness's reader lives in, for the coverage report.
readers() {
    case $1 in
        safetensors) echo "$root/Sources/Checkpoint/SafetensorsFile.swift $root/Sources/Checkpoint/Internals/JSON.swift $root/Sources/Checkpoint/TensorInfo.swift $root/Sources/Checkpoint/Internals/ElementConversion.swift" ;;
        plan) echo "$root/Sources/Optimizer/Plans/Plan.swift $root/Sources/Optimizer/Plans/EncodedAsNull.swift" ;;
        manifest) echo "$root/Sources/ArtifactFormat/Artifact.swift" ;;
    esac
}
if [ $coverage = 1 ]; then
    echo "== coverage: building the harnesses (release, -profile-generate) in Fuzz/.build-cov"
    tools=$(dirname "$(command -v swift)")  # the toolchain's llvm-profdata and llvm-cov (the system's may be older)
    cov=(-c release --build-path "$here/.build-cov" -Xswiftc -sanitize=fuzzer -Xswiftc -profile-generate -Xswiftc -profile-coverage-mapping)
    mkdir -p "$work/coverage" "$work/logs"
    for t in "${targets[@]}"; do
        (cd "$here" && swift build "${cov[@]}" --product "fuzz-$t") >"$work/logs/build-coverage.log" 2>&1 || { tail -n 30 "$work/logs/build-coverage.log"; exit 2; }
        bin=$(cd "$here" && swift build "${cov[@]}" --show-bin-path)
        rm -f "$work/coverage/$t".prof*
        [ "$t" = manifest ] && export FUZZ_ARTIFACT=$work/files/artifact-q
        mkdir -p "$work/corpus/$t"
        LLVM_PROFILE_FILE="$work/coverage/$t.profraw" "$bin/fuzz-$t" -runs=0 "$work/corpus/$t" "$seeds/$t" >"$work/logs/coverage-$t.log" 2>&1
        "$tools/llvm-profdata" merge -sparse "$work/coverage/$t.profraw" -o "$work/coverage/$t.profdata"
        echo "== fuzz-$t: $(find "$work/corpus/$t" "$seeds/$t" -type f | wc -l) inputs"
        # shellcheck disable=SC2046
        "$tools/llvm-cov" report "$bin/fuzz-$t" -instr-profile="$work/coverage/$t.profdata" $(readers "$t") | sed "s|$root/||"
    done
    exit 0
fi

echo "== building the harnesses (release, -sanitize=fuzzer,address)"
mkdir -p "$work/logs"
for t in "${targets[@]}"; do
    if ! (cd "$here" && swift build -c release -Xswiftc -sanitize=fuzzer,address --product "fuzz-$t") >"$work/logs/build.log" 2>&1; then
        tail -n 30 "$work/logs/build.log"
        exit 2
    fi
done
bin=$(cd "$here" && swift build -c release -Xswiftc -sanitize=fuzzer,address --show-bin-path)

status=0
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/findings/$t" "$work/logs"
    case $t in safetensors) max_len=65536 ;; plan) max_len=8192 ;; manifest) max_len=16384 ;; esac
    flags=(-runs="$runs" -max_len=$max_len -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -use_value_profile=1
           -dict="$here/dictionaries/$t.dict" -artifact_prefix="$work/findings/$t/")
    [ "$seconds" -gt 0 ] && flags+=(-max_total_time="$seconds")
    [ "$t" = manifest ] && export FUZZ_ARTIFACT=$work/files/artifact-q
    echo "== fuzz-$t ${flags[*]} ${FUZZ_ARGS:-}"
    start=$(date +%s)
    # shellcheck disable=SC2086
    # Past findings (Fuzz/regressions/TARGET) are read first with the seeds, every run.
    regressions=(); [ -d "$here/regressions/$t" ] && regressions=("$here/regressions/$t")
    if ! "$bin/fuzz-$t" "${flags[@]}" ${FUZZ_ARGS:-} "$work/corpus/$t" "$seeds/$t" "${regressions[@]}" >"$work/logs/$t.log" 2>&1; then status=1; fi
    end=$(date +%s)
    echo "fuzz-$t: $((end - start)) s; $(grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$work/logs/$t.log" | tr '\n' ' ')"
    grep -E '^#[0-9]+.*(DONE|cov:)' "$work/logs/$t.log" | tail -n 1 || true
    found=$(find "$work/findings/$t" -type f | wc -l)
    echo "fuzz-$t: $found finding(s) in $work/findings/$t"
    [ "$found" -eq 0 ] || status=1
done
exit $status
