#!/usr/bin/env bash
# One node of the local cluster started by slurm/start.sh, for fault tests:
#
#   slurm/node.sh crash NAME   SIGKILL every process of node NAME (slurmd, slurmstepd, job tasks), as
#                              a power cut would: nothing can catch it. slurmctld notices after
#                              SlurmdTimeout, marks the node DOWN and requeues its --requeue jobs.
#   slurm/node.sh start NAME   start NAME's slurmd again and wait until the node takes jobs
#                              (ReturnToService=2 returns a DOWN node once its slurmd registers).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 2 && "$1" =~ ^(crash|start)$ && "$2" =~ ^n[0-9]+$ ]] || { echo "usage: $0 crash|start nN" >&2; exit 2; }
action="$1" name="$2"
[[ -f "$SLURM_CONF_FILE" ]] || { log "no cluster state in $STATE"; exit 1; }
export SLURM_CONF="$SLURM_CONF_FILE"
lock_state

case "$action" in
    crash)
        live_pid "slurmd.$name" slurmd > /dev/null || { log "slurmd $name is not running"; exit 1; }
        kill_node "slurmd.$name"
        log "node $name crashed (every process in its namespaces SIGKILLed)"
        ;;
    start)
        if live_pid "slurmd.$name" slurmd > /dev/null; then log "slurmd $name runs already"; exit 0; fi
        start_slurmd "$name" || die "slurmd $name failed to start" "$LOG_DIR/slurmd.$name.out" "$LOG_DIR/slurmd.$name.log"
        deadline=$((SECONDS + 30))
        until pid="$(live_pid "slurmd.$name" slurmd)"; do
            ((SECONDS < deadline)) || die "slurmd $name did not start" "$LOG_DIR/slurmd.$name.log"
            sleep 0.2
        done
        ns_id "$pid" > "$RUN_DIR/slurmd.$name.ns"
        deadline=$((SECONDS + 90))
        until sinfo -h -n "$name" -o '%T' | grep -qEx 'idle|mixed|allocated|completing'; do
            ((SECONDS < deadline)) || die "node $name did not come back: $(sinfo -h -n "$name" -o '%T %E')" \
                "$LOG_DIR/slurmd.$name.log" "$LOG_DIR/slurmctld.log"
            sleep 0.5
        done
        log "node $name is back"
        ;;
esac
