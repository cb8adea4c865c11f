#!/usr/bin/env bash
# The Slurm scripts on a real single-node cluster (local-cluster.sh starts it; CI runs this from .ci/run):
#   1. a 4-shard analyze of a synthetic pair through submit.sh, byte-identical to a single-process analyze;
#   2. a 2-shard compress of a plan through submit.sh, byte-identical to a single-process compress;
#   3. a failed shard: the finalize job is cancelled, the rerun command printed for it repairs the store;
#   4. `deltaplan serve --executor slurm`: an analysis and a compression submitted over HTTP run as 2-task
#      arrays plus finalize jobs and give the single-process store and artifact (diff -r); a cancelled
#      analysis leaves no job in squeue.
# DELTAPLAN names the executable (default: .build/debug/deltaplan, built if missing). Bounded: each stage
# waits at most STAGE_TIMEOUT seconds (default 600) for its jobs; on failure it prints the jobs and logs.
# Stops the cluster at the end if it started it. Prints "N passed, 0 failed" when all checks pass.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
slurm="$root/Deploy/slurm"
timeout_s="${STAGE_TIMEOUT:-600}"
export CI=1  # plain output from deltaplan: no progress lines
if [ -z "${DELTAPLAN:-}" ]; then
  DELTAPLAN="$root/.build/debug/deltaplan"
  [ -x "$DELTAPLAN" ] || (cd "$root" && swift build --product deltaplan)
fi
DELTAPLAN="$(realpath "$DELTAPLAN")"
export DELTAPLAN

work="$(mktemp -d /tmp/deltaplan-slurm-test.XXXXXX)"
export LOG_DIR="$work/logs"
jobs=()
started=0
serve_pid=""
cleanup() {
  status=$?
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  for id in "${jobs[@]}"; do timeout 15 scancel "$id" 2>/dev/null || true; done
  if [ "$started" = 1 ]; then "$slurm/local-cluster.sh" stop || true; fi
  if [ "$status" = 0 ]; then rm -rf "$work"; else echo "test-cluster: FAILED; files left in $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # so that a timeout or ^C still runs cleanup

fail() {
  echo "test-cluster: $*" >&2
  for id in "${jobs[@]}"; do timeout 15 scontrol show job "$id" 2>/dev/null | grep -E 'JobId=|JobState=' >&2 || true; done
  for log in "$LOG_DIR"/*.out "$work"/serve/slurm/*/*.out "$work"/serve.log; do [ -f "$log" ] && { echo "--- $log" >&2; cat "$log" >&2; }; done
  exit 1
}

# The states of a job (each task of an array job), one per line.
job_states() { timeout 15 scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }

# Waits until every job named has finished (any end state), at most timeout_s seconds.
wait_jobs() {
  local deadline=$((SECONDS + timeout_s)) id
  for id in "$@"; do
    while job_states "$id" | grep -qE '^(PENDING|CONFIGURING|RUNNING|COMPLETING|REQUEUED|RESIZING|SUSPENDED)$' \
      || [ -z "$(job_states "$id")" ]; do
      [ "$SECONDS" -lt "$deadline" ] || fail "job $id has not finished after ${timeout_s} s (STAGE_TIMEOUT)"
      sleep 2
    done
  done
}

# Fails unless every task of every job named ended COMPLETED.
expect_completed() {
  local id
  for id in "$@"; do
    [ "$(job_states "$id" | sort -u)" = COMPLETED ] || fail "job $id did not complete: $(job_states "$id" | sort -u | tr '\n' ' ')"
  done
}

passed=0
mark=$SECONDS
check() { echo "ok: $* ($((SECONDS - mark)) s)"; passed=$((passed + 1)); mark=$SECONDS; }

if ! timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP'; then started=1; fi
timeout 900 "$slurm/local-cluster.sh" start || fail "the local cluster did not start"
echo "slurm: cluster up ($((SECONDS - mark)) s)"
mark=$SECONDS

pair="$work/pair"
"$DELTAPLAN" synth --profile llama-2-7b --scale 0.0625 --layers 2 --seed 3 --tokens 128 --out "$pair" >/dev/null
export BASE="$pair/base" FINETUNED="$pair/finetuned" CALIBRATION="$pair/calibration.safetensors"

# 1. analyze: one process against 4 shards and a finalize job. 16 vectors per matrix (not h_out·h_in/(h_out+h_in))
# keep plan's measurement pass and compress short; options given to submit.sh reach every shard.
analyze_options=(--max-rank 16)
"$DELTAPLAN" analyze --base "$BASE" --finetuned "$FINETUNED" --calibration "$CALIBRATION" "${analyze_options[@]}" \
  --out "$work/store1" >/dev/null
ids="$(SHARDS=4 STORE="$work/store2" "$slurm/submit.sh" analyze "${analyze_options[@]}")" || fail "submit.sh analyze failed"
read -r array final <<<"$ids"
jobs+=("$array" "$final")
wait_jobs "$array" "$final"
expect_completed "$array" "$final"
diff -r "$work/store1" "$work/store2" || fail "the 4-shard store differs from the single-process store"
check "analyze: 4 shards + finalize on Slurm == single process (diff -r)"

# 2. compress: one process against 2 shards and a finalize job, the same plan (store1 is the plan's store).
cp -r "$work/store1" "$work/store-for-plan"
"$DELTAPLAN" plan "$work/store-for-plan" --budget 1/16 --out "$work/plan.json" >/dev/null
"$DELTAPLAN" compress "$work/store1" --plan "$work/plan.json" --out "$work/artifact1" >/dev/null
ids="$(SHARDS=2 STORE="$work/store1" PLAN="$work/plan.json" ARTIFACT="$work/artifact2" \
  "$slurm/submit.sh" compress)" || fail "submit.sh compress failed"
read -r array final <<<"$ids"
jobs+=("$array" "$final")
wait_jobs "$array" "$final"
expect_completed "$array" "$final"
diff -r "$work/artifact1" "$work/artifact2" || fail "the 2-shard artifact differs from the single-process artifact"
[ ! -e "$work/.artifact2.partial" ] || fail "finalize left the work directory $work/.artifact2.partial"
check "compress: 2 shards + finalize on Slurm == single process (diff -r)"

# 3. a failed shard: shard 3 of 4 fails once (a wrapper in front of deltaplan), so afterok is never met and
# the finalize job is cancelled; the rerun command submit.sh printed repairs the store.
cat > "$work/flaky-deltaplan" <<EOF
#!/usr/bin/env bash
if [[ " \$* " == *" --shard 3/4 "* ]] && [ ! -e "$work/failed-once" ]; then
  touch "$work/failed-once"; echo "flaky-deltaplan: shard 3 fails this once" >&2; exit 1
fi
exec $(printf %q "$DELTAPLAN") "\$@"
EOF
chmod +x "$work/flaky-deltaplan"
ids="$(DELTAPLAN="$work/flaky-deltaplan" SHARDS=4 STORE="$work/store3" \
  "$slurm/submit.sh" analyze "${analyze_options[@]}" 2>"$work/submit3.err")" || fail "submit.sh analyze failed: $(cat "$work/submit3.err")"
read -r array final <<<"$ids"
jobs+=("$array" "$final")
wait_jobs "$array" "$final"
[ "$(job_states "$final")" = CANCELLED ] || fail "finalize job $final after a failed shard: $(job_states "$final"), not CANCELLED"
grep -q 'sbatch --array=3 ' "$LOG_DIR/deltaplan-analyze-${array}_3.out" \
  || fail "shard 3's log does not say how to rerun it"
rerun="$(grep -o '^ *BASE=.* sbatch .*--array=K .*' "$work/submit3.err")" || fail "submit.sh printed no rerun command"
rerun_id="$(eval "${rerun/--array=K/--parsable --array=3}")"
jobs+=("${rerun_id%%;*}")
wait_jobs "${rerun_id%%;*}"
expect_completed "${rerun_id%%;*}"
"$DELTAPLAN" analyze --finalize "$work/store3" >/dev/null
diff -r "$work/store1" "$work/store3" || fail "the store repaired by rerunning shard 3 differs from the single-process store"
check "a failed shard cancels finalize; its printed rerun command repairs the store (diff -r)"

# 4. serve --executor slurm: jobs submitted over HTTP (curl) run as 2-task arrays plus finalize jobs.
"$DELTAPLAN" serve --data-dir "$work/serve" --allow-root "$work" --port 0 --executor slurm --slurm-shards 2 \
  --slurm-poll-seconds 1 --slurm-option=--cpus-per-task=1 --slurm-option=--mem=1G >"$work/serve.log" 2>&1 &
serve_pid=$!
deadline=$((SECONDS + 60))
until port="$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$work/serve.log" | grep -o '[0-9]*$')"; do
  kill -0 "$serve_pid" 2>/dev/null || fail "deltaplan serve --executor slurm did not start"
  [ "$SECONDS" -lt "$deadline" ] || fail "deltaplan serve --executor slurm did not listen within 60 s"
  sleep 0.5
done
api="http://127.0.0.1:$port/v1"
# A field of the JSON object on standard input (a.b: field b of field a).
field() {
  python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."): value = value.get(key) if isinstance(value, dict) else None
print(value or "")' "$1"
}
submit() { curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' -d "$2" "$api/$1" | field id; }
# Waits until the service job $1 has ended (bounded); prints its state.
wait_service_job() {
  local deadline=$((SECONDS + timeout_s)) state
  while state="$(curl -sS --max-time 30 "$api/jobs/$1" | field state)"; [[ "$state" =~ ^(queued|running)$ ]]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "service job $1 has not ended after ${timeout_s} s (STAGE_TIMEOUT)"
    sleep 1
  done
  echo "$state"
}
analysis="$(submit analyses "{\"base\": \"$BASE\", \"finetuned\": \"$FINETUNED\", \"calibration\": \"$CALIBRATION\", \"maxRank\": 16}")"
[ -n "$analysis" ] || fail "POST /v1/analyses returned no job id"
state="$(wait_service_job "$analysis")"
[ "$state" = succeeded ] || fail "service analysis $analysis $state: $(curl -sS "$api/jobs/$analysis")"
diff -r "$work/store1" "$work/serve/analyses/$analysis" || fail "the service's Slurm store differs from the single-process store"
compression="$(submit compressions "{\"planFile\": \"$work/plan.json\", \"base\": \"$BASE\", \"finetuned\": \"$FINETUNED\", \"calibration\": \"$CALIBRATION\"}")"
[ -n "$compression" ] || fail "POST /v1/compressions returned no job id"
# The single-process compress of the same store with the same options, meanwhile.
"$DELTAPLAN" compress "$work/serve/analyses/$analysis" --plan "$work/plan.json" --base "$BASE" --finetuned "$FINETUNED" \
  --calibration "$CALIBRATION" --out "$work/artifact4" >/dev/null
state="$(wait_service_job "$compression")"
[ "$state" = succeeded ] || fail "service compression $compression $state: $(curl -sS "$api/jobs/$compression")"
diff -r "$work/artifact4" "$work/serve/artifacts/$compression" || fail "the service's Slurm artifact differs from the single-process artifact"
check "serve --executor slurm: analysis and compression over HTTP as 2-task arrays + finalize == single process (diff -r)"

# A cancel: the node is held by an exclusive job, so the array stays pending; the service's cancel scancels both.
blocker="$(sbatch --parsable --exclusive --output=/dev/null --wrap 'sleep 600')"
blocker="${blocker%%;*}"
jobs+=("$blocker")
deadline=$((SECONDS + 60))
until [ "$(job_states "$blocker")" = RUNNING ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the blocking job $blocker did not start within 60 s"
  sleep 1
done
cancelled="$(submit analyses "{\"base\": \"$BASE\", \"finetuned\": \"$FINETUNED\", \"maxRank\": 16}")"
deadline=$((SECONDS + 60))
until ids="$(curl -sS --max-time 30 "$api/jobs/$cancelled" | field progress.message | grep -o 'array job [0-9]*, finalize job [0-9]*')"; do
  [ "$SECONDS" -lt "$deadline" ] || fail "service job $cancelled was not submitted to Slurm within 60 s"
  sleep 0.5
done
read -r array final <<<"$(tr -dc '0-9 ' <<<"$ids" | tr -s ' ')"
jobs+=("$array" "$final")
[ "$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -X DELETE "$api/jobs/$cancelled")" = 202 ] || fail "DELETE /v1/jobs/$cancelled did not answer 202"
state="$(wait_service_job "$cancelled")"
[ "$state" = cancelled ] || fail "service job $cancelled $state after a cancel"
left="$(squeue --noheader --array --jobs="$array,$final" --states=PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED 2>/dev/null || true)"
[ -z "$left" ] || fail "jobs left in squeue after the cancel: $left"
[ ! -e "$work/serve/analyses/$cancelled" ] || fail "the cancelled analysis left its store"
scancel "$blocker"
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""
check "serve --executor slurm: a cancel scancels the array and finalize jobs (none left in squeue)"

echo "slurm: the checks took $SECONDS s in all"
echo "slurm: $passed passed, 0 failed"
