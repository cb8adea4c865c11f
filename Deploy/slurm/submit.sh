#!/usr/bin/env bash
# Submits a sharded deltaplan stage to Slurm: an array job of SHARDS shards, and a finalize job that
# runs once all of them have succeeded (--dependency=afterok) and is cancelled if one fails.
#
#   BASE=B FINETUNED=F [CALIBRATION=C] STORE=S Deploy/slurm/submit.sh analyze [analyze options...]
#   STORE=S PLAN=P ARTIFACT=A Deploy/slurm/submit.sh compress [compress options...]
#
# Also read: DELTAPLAN (the executable, default: deltaplan on PATH), SHARDS (default 4), LOG_DIR (the
# jobs' output files, default: the current directory). Paths are made absolute; they, the executable and
# LOG_DIR must be on storage every node shares. sbatch's own variables (SBATCH_PARTITION, SBATCH_ACCOUNT,
# SBATCH_TIMELIMIT, ...) apply to every job.
# Prints "ARRAY_JOB_ID FINALIZE_JOB_ID" on standard output, and on standard error how to follow the jobs
# and how to rerun one failed shard.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
usage="usage: $0 analyze|compress [deltaplan options...] (inputs in the environment: see the header)"
stage="${1:-}"
[ $# -gt 0 ] && shift
SHARDS="${SHARDS:-4}"
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || { echo "submit: SHARDS must be a positive integer, not '$SHARDS'" >&2; exit 2; }
LOG_DIR="$(realpath -m "${LOG_DIR:-.}")"
mkdir -p "$LOG_DIR"
DELTAPLAN="$(command -v "${DELTAPLAN:-deltaplan}")" || { echo "submit: no deltaplan executable: set DELTAPLAN" >&2; exit 2; }
DELTAPLAN="$(realpath "$DELTAPLAN")"

# An input that must exist, as an absolute path.
existing() {
  [ -n "${!1:-}" ] || { echo "submit: set $1 ($2)" >&2; exit 2; }
  [ -e "${!1}" ] || { echo "submit: $1=${!1} does not exist" >&2; exit 2; }
  realpath -s "${!1}"  # absolute, symlinks kept: the paths a store records are the ones given
}

case "$stage" in
  analyze)
    # shellcheck disable=SC2034 # exported by name below, for the jobs
    BASE="$(existing BASE 'the base checkpoint')"
    # shellcheck disable=SC2034
    FINETUNED="$(existing FINETUNED 'the fine-tuned checkpoint')"
    [ -n "${CALIBRATION:-}" ] && CALIBRATION="$(existing CALIBRATION 'the calibration file')"
    : "${STORE:?set STORE (the spectrum store to write, on shared storage)}"
    STORE="$(realpath -ms "$STORE")"
    environment=(BASE FINETUNED STORE)
    [ -n "${CALIBRATION:-}" ] && environment+=(CALIBRATION)
    finalize=("$DELTAPLAN" analyze --finalize "$STORE")
    ;;
  compress)
    STORE="$(existing STORE 'the spectrum store the plan was made from')"
    PLAN="$(existing PLAN 'the plan file')"
    : "${ARTIFACT:?set ARTIFACT (the artifact to write, on shared storage)}"
    ARTIFACT="$(realpath -ms "$ARTIFACT")"
    environment=(STORE PLAN ARTIFACT)
    finalize=("$DELTAPLAN" compress "$STORE" --plan "$PLAN" --out "$ARTIFACT" --finalize "$@")
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
environment+=(DELTAPLAN SHARDS)
# shellcheck disable=SC2163 # exports the variables named in the array
export "${environment[@]}"

array="$(sbatch --parsable --export=ALL --array="1-$SHARDS" \
  --output="$LOG_DIR/deltaplan-$stage-%A_%a.out" "$here/$stage.sbatch" "$@")"
array="${array%%;*}"
final="$(sbatch --parsable --export=ALL --dependency="afterok:$array" --kill-on-invalid-dep=yes \
  --job-name="deltaplan-$stage-finalize" --output="$LOG_DIR/deltaplan-$stage-finalize-%j.out" \
  --wrap="$(printf '%q ' "${finalize[@]}")")"
final="${final%%;*}"

rerun="$(for v in "${environment[@]}"; do printf '%s=%q ' "$v" "${!v}"; done)"
rerun+="sbatch --export=ALL --array=K --output=$(printf %q "$LOG_DIR/deltaplan-$stage-%A_%a.out") "
rerun+="$(printf %q "$here/$stage.sbatch")${*:+$(printf ' %q' "$@")}"
cat >&2 <<EOF
submitted deltaplan $stage: $SHARDS shards in array job $array, finalize job $final once all succeed
  follow:  squeue -j $array,$final    (then: scontrol show job $final)
  logs:    $LOG_DIR/deltaplan-$stage-${array}_I.out, $LOG_DIR/deltaplan-$stage-finalize-$final.out
  if shard K fails, the finalize job is cancelled: fix the cause, rerun shard K alone,
    $rerun
  then finalize, as a job (--dependency=afterok:RERUN_JOB_ID) or directly:
    $(printf '%q ' "${finalize[@]}")
EOF
echo "$array $final"
