#!/usr/bin/env bash
# Stop the local SLURM cluster started by slurm/start.sh: every daemon by its pid file, waiting
# for each to exit. Nothing running: does nothing.
#
#   slurm/stop.sh            stop; keep the state (accounting, job ids, MariaDB data)
#   slurm/stop.sh --purge    stop and delete the whole state folder
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PURGE=0 QUIET=0
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=1 ;;
        --quiet) QUIET=1 ;;  # used by start.sh: say nothing when nothing runs
        *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
    esac
done

[[ -d "$STATE" ]] || { ((QUIET)) || log "nothing was running"; exit 0; }
lock_state

# terminate PID...: SIGTERM, then SIGKILL whatever is left after 15 s, then wait.
terminate() {
    [[ $# -gt 0 && -n "$1" ]] || return 0
    kill -TERM "$@" 2>/dev/null || true
    if ! wait_gone 15 "$@"; then
        log "still running after 15s, sending SIGKILL: $*"
        kill_now "$@"
    fi
}

stopped=0
# Running jobs die with their node; cancel them first so slurmctld and sacct record that (left
# alone, slurmctld would show them RUNNING forever after the next start). Pending jobs stay queued.
if live_pid slurmctld slurmctld > /dev/null && [[ -f "$SLURM_CONF_FILE" ]]; then
    export SLURM_CONF="$SLURM_CONF_FILE"
    if [[ -n "$(squeue -h -t RUNNING,SUSPENDED,CONFIGURING -o %A 2>/dev/null || true)" ]]; then
        log "cancelling running jobs"
        for st in RUNNING SUSPENDED CONFIGURING; do scancel --state="$st" 2>/dev/null || true; done
        deadline=$((SECONDS + 15))
        while [[ -n "$(squeue -h -t RUNNING,COMPLETING,SUSPENDED,CONFIGURING -o %A 2>/dev/null || true)" ]] \
            && ((SECONDS < deadline)); do
            sleep 0.2
        done
    fi
fi
# stop_group NAME:COMM...: stop these daemons together (each by its pid file) and wait for them.
stop_group() {
    local d pids=()
    for d in "$@"; do
        if pid="$(live_pid "${d%%:*}" "${d##*:}")"; then pids+=("$pid"); fi
    done
    terminate "${pids[@]}"
    stopped=$((stopped + ${#pids[@]}))
    for d in "$@"; do rm -f "$(pid_file "${d%%:*}")"; done
}

# Nodes and controller first (together: neither needs the other to shut down), then whatever
# still lives in the nodes' namespaces (slurmstepd and job tasks), recorded by start.sh in
# run/slurmd.<node>.ns: this also catches what an unclean stop (slurmd killed) left behind.
nodes=()
for f in "$RUN_DIR"/slurmd.*.pid; do
    [[ -e "$f" ]] || continue
    nodes+=("$(basename "$f" .pid):slurmd")
done
stop_group "${nodes[@]}" slurmctld:slurmctld
for f in "$RUN_DIR"/slurmd.*.ns; do
    # Without their slurmd, slurmstepd linger ~10 s on SIGTERM retrying it; the jobs die anyway.
    [[ -e "$f" ]] && kill_node "$(basename "$f" .ns)"
done
# Then the rest in reverse start order; slurmctld flushes its accounting to slurmdbd on the way
# out, so slurmdbd (and its database) stop only after it.
stop_group slurmdbd:slurmdbd
stop_group mariadb:mariadbd munged:munged
rm -f "$NODES_FILE"

if ((stopped)); then log "stopped $stopped daemon(s)"; elif ((!QUIET)); then log "nothing was running"; fi
if ((PURGE)) && [[ -d "$STATE" ]]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
