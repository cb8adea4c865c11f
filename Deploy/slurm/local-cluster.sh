#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for testing the scripts beside this file (CI runs it).
#
#   Deploy/slurm/local-cluster.sh [start]   install (Debian: slurm-wlm munge, when missing), configure,
#                                           start munged, slurmctld and slurmd; wait until the node is idle
#   Deploy/slurm/local-cluster.sh stop      stop them
#   Deploy/slurm/local-cluster.sh status    print the controller's and the node's state
#
# Needs root on Debian 12 (no systemd needed: the daemons are started directly). Idempotent: with the
# cluster up, `start` does nothing. Every wait is bounded; a failure prints the daemons' logs.
# It writes /etc/slurm/slurm.conf, and refuses to replace one that it did not write.
set -euo pipefail

mode="${1:-start}"
conf=/etc/slurm/slurm.conf
marker="# Written by DeltaPlan's Deploy/slurm/local-cluster.sh: a single-node test cluster."
logs=/var/log/slurm
state=/var/lib/slurm
munge_pid=/run/munge/munged.pid

fail() {
  echo "local-cluster: $*" >&2
  for log in "$logs/slurmctld.log" "$logs/slurmd.log" /var/log/munge/munged.log; do
    [ -f "$log" ] && { echo "--- last lines of $log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}

# The node's state as sinfo reports it (idle, mixed, allocated, down, drained, unknown...), or nothing.
node_state() { timeout 15 sinfo --noheader --format=%T 2>/dev/null | head -n 1 | tr -d '*~#' || true; }

cluster_up() {
  command -v scontrol >/dev/null || return 1
  timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
  case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

install_packages() {
  local missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "local-cluster: installing ${missing[*]}" >&2
  timeout 300 apt-get update -qq || fail "apt-get update failed or took over 5 minutes"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed or took over 10 minutes"
}

start_munge() {
  if timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; then return 0; fi
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  timeout 30 runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
  for _ in $(seq 20); do
    timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  fail "munge does not answer 10 s after munged started"
}

config_is_ours() {
  if [ -f "$conf" ] && ! grep -qxF "$marker" "$conf"; then
    echo "local-cluster: $conf exists and was not written by this script: a real cluster's? Move it away to use this one." >&2
    exit 1
  fi
}

write_config() {
  config_is_ours
  local host node
  host="$(hostname -s)"
  # The node's real CPUs, sockets, cores, threads and memory: slurmd's first line, as it will register.
  node="$(timeout 30 slurmd -C | head -n 1)"
  case "$node" in NodeName=*) ;; *) fail "slurmd -C printed no NodeName line: $node" ;; esac
  mkdir -p /etc/slurm "$logs" "$state/slurmctld" "$state/slurmd"
  cat > "$conf.tmp" <<EOF
$marker
ClusterName=deltaplan-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state/slurmctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
# No cgroups in a VM or container: processes tracked by parent id, tasks not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: finished jobs are read with scontrol while they are remembered (MinJobAge seconds).
AccountingStorageType=accounting_storage/none
MinJobAge=3600
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
}

start() {
  if cluster_up; then
    echo "local-cluster: already up ($(hostname -s): $(node_state))" >&2
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || fail "needs root (it installs packages and starts daemons)"
  config_is_ours
  install_packages
  start_munge
  write_config
  if ! timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    timeout 30 slurmctld || fail "slurmctld did not start"
  fi
  if ! { [ -f /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; }; then
    timeout 30 slurmd || fail "slurmd did not start"
  fi
  local s=""
  for _ in $(seq 60); do
    s="$(node_state)"
    case "$s" in
      idle | mixed | allocated) echo "local-cluster: up ($(hostname -s): $s)" >&2; return 0 ;;
      down | drained | draining) timeout 15 scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  fail "the node is not idle 60 s after the daemons started (state: ${s:-none})"
}

stop() {
  config_is_ours  # never shut down a cluster this script did not configure
  if command -v scontrol >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    timeout 30 scontrol shutdown >/dev/null 2>&1 || true
  fi
  # Each daemon by the id in its pid file, and only if that process still has the daemon's name.
  local entry pidfile name pid
  for entry in /run/slurmd.pid:slurmd /run/slurmctld.pid:slurmctld "$munge_pid:munged"; do
    pidfile="${entry%%:*}" name="${entry##*:}"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$pidfile"
  done
  echo "local-cluster: stopped" >&2
}

case "$mode" in
  start) start ;;
  stop) stop ;;
  status) timeout 15 scontrol ping || true; timeout 15 sinfo || true ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
