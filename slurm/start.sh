#!/usr/bin/env bash
# Start a real local SLURM cluster (munged, MariaDB, slurmdbd, slurmctld, 1-2 slurmd) whose whole
# state lives in ${HPC_TRAIN_SLURM_STATE:-<repo>/.slurm-state}. System files stay untouched.
#
#   slurm/start.sh [--nodes 1|2]     (default 2; already up with that count: just says so)
#
# Prints the line to paste (export SLURM_CONF=...) and writes it to <state>/env.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 [--nodes 1|2]" >&2; exit 2; }

NODES=2
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) [[ $# -ge 2 ]] || usage; NODES="$2"; shift 2 ;;
        --nodes=*) NODES="${1#--nodes=}"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[[ "$NODES" == 1 || "$NODES" == 2 ]] || { echo "--nodes must be 1 or 2, got '$NODES'" >&2; exit 2; }

[[ "$(id -u)" == 0 ]] || die "must run as root (SlurmUser=root; slurmd needs unshare and mount)"
for cmd in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacctmgr unshare; do
    command -v "$cmd" > /dev/null || die "'$cmd' not found: install slurm-wlm slurmdbd munge mariadb-server (scripts/setup.sh)"
done

lock_state

print_env() {
    log "up with $(running_nodes) node(s): $(node_names "$(running_nodes)")"
    echo "export SLURM_CONF=$SLURM_CONF_FILE"
}

if cluster_up; then
    if [[ "$(running_nodes)" == "$NODES" ]]; then
        log "already up"
        print_env
        exit 0
    fi
    log "running with $(running_nodes) node(s), restarting with $NODES"
fi
# Also clears what an unclean stop left behind (stray daemons, job processes of old nodes).
"$SLURM_DIR/stop.sh" --quiet

t0=$SECONDS
# A start that fails half-way stops what it did start (the logs stay for reading).
trap 'rc=$?; if ((rc != 0)); then "$SLURM_DIR/stop.sh" --quiet || true; fi' EXIT
umask 022
# Daemons below are started with "9<&-" so they do not inherit (and hold forever) the state lock.
mkdir -p "$STATE" "$RUN_DIR" "$LOG_DIR" "$STATE/munge" "$STATE/mysql" "$STATE/spool/ctld"
# munged refuses group/other-writable folders on the way to its key and socket.
chmod 755 "$STATE" "$RUN_DIR" "$LOG_DIR"
chmod 755 "$STATE/munge"  # key stays 600; the socket folder must be traversable by all
mkdir -p "$MUNGE_SOCKET_DIR" && chmod 755 "$MUNGE_SOCKET_DIR"

# ---- render the configuration -------------------------------------------------------------
shopt -u patsub_replacement 2>/dev/null || true  # bash 5.2: "&" in a path must stay literal
render() {
    # render TEMPLATE KEY=VALUE... > OUT: replace each @KEY@ in TEMPLATE by VALUE.
    local text kv
    text="$(< "$1")"
    for kv in "${@:2}"; do text="${text//@${kv%%=*}@/${kv#*=}}"; done
    printf '%s\n' "$text"
}
ctld_port=$PORT_BASE
dbd_port=$((PORT_BASE + 1))
node_lines=""
i=0
for name in $(node_names "$NODES"); do
    i=$((i + 1))
    mkdir -p "$STATE/spool/$name" "$STATE/tmp/$name"
    node_lines+="$(render "$SLURM_DIR/node.conf.in" NODE="$name" NODE_PORT=$((PORT_BASE + 1 + i)))"$'\n'
done
node_list="$(node_names "$NODES" | tr ' ' ',')"
common=(STATE="$STATE" CLUSTER="$CLUSTER_NAME" MUNGE_SOCKET="$MUNGE_SOCKET" DBD_PORT="$dbd_port")
first_job_id=$(( (PORT_BASE > 16817 ? PORT_BASE - 16817 : 16817 - PORT_BASE) + 1 ))
render "$SLURM_DIR/slurm.conf.in" "${common[@]}" CTLD_HOST="$(hostname -s)" CTLD_PORT="$ctld_port" \
    FIRST_JOB_ID="$first_job_id" \
    NODE_LINES="${node_lines%$'\n'}" NODE_LIST="$node_list" > "$SLURM_CONF_FILE"
( umask 077; render "$SLURM_DIR/slurmdbd.conf.in" "${common[@]}" > "$STATE/slurmdbd.conf" )
chmod 600 "$STATE/slurmdbd.conf"
# Inside each node's mount namespace this file replaces /etc/hosts, so n1..nN resolve there.
{ cat /etc/hosts; echo "127.0.0.1 $(node_names 2)"; } > "$STATE/hosts"
echo "$NODES" > "$NODES_FILE"
export SLURM_CONF="$SLURM_CONF_FILE"
export MYSQL_UNIX_PORT="$MYSQL_SOCKET"

# wait_for SECONDS WHAT LOGFILE CMD...: poll CMD every 0.2 s; die with LOGFILE's tail on timeout,
# or at once when LOGFILE gained a "fatal:" line since mark_log (the daemon gave up) or the
# process WATCH_PID (if set) exited.
mark_log() { LOG_FROM="$(stat -c %s "$1" 2>/dev/null || echo 0)"; }
LOG_FROM=0 WATCH_PID=""
wait_for() {
    local limit="$1" what="$2" logf="$3"; shift 3
    local deadline=$((SECONDS + limit))
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${limit}s" "$logf"
        if [[ -f "$logf" ]] && tail -c +$((LOG_FROM + 1)) "$logf" | grep -q 'fatal:'; then
            die "$what failed" "$logf"
        fi
        if [[ -n "$WATCH_PID" ]] && ! alive "$WATCH_PID"; then die "$what exited" "$logf"; fi
        sleep 0.2
    done
    WATCH_PID=""
}

# ---- munged ---------------------------------------------------------------------------------
if [[ ! -s "$STATE/munge/munge.key" ]]; then
    mungekey --create --keyfile="$STATE/munge/munge.key" > /dev/null 2>&1 \
        || dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$STATE/munge/munge.key"
rm -f "$MUNGE_SOCKET"
mark_log "$LOG_DIR/munged.log"
munged --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$(pid_file munged)" --log-file="$LOG_DIR/munged.log" \
    --seed-file="$STATE/munge/munged.seed" > "$LOG_DIR/munged.out" 2>&1 9<&- \
    || die "munged failed to start" "$LOG_DIR/munged.out" "$LOG_DIR/munged.log"
wait_for 10 munged "$LOG_DIR/munged.log" test -S "$MUNGE_SOCKET"

# ---- MariaDB (socket only, data in the state folder) ----------------------------------------
if [[ ! -d "$STATE/mysql/data/mysql" ]]; then
    log "first start: initialising MariaDB in $STATE/mysql/data"
    rm -rf "$STATE/mysql/data"
    mariadb-install-db --no-defaults --datadir="$STATE/mysql/data" --user=root \
        --auth-root-authentication-method=socket --skip-test-db > "$LOG_DIR/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed" "$LOG_DIR/mariadb-install.log"
fi
rm -f "$MYSQL_SOCKET"
mark_log "$LOG_DIR/mariadb.log"
# innodb settings: close to what slurmdbd asks for (it still logs a harmless buffer-pool warning).
nohup mariadbd --no-defaults --datadir="$STATE/mysql/data" --socket="$MYSQL_SOCKET" \
    --pid-file="$(pid_file mariadb)" --log-error="$LOG_DIR/mariadb.log" --skip-networking \
    --user=root --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
    --innodb-lock-wait-timeout=900 > /dev/null 2>&1 < /dev/null 9<&- &
WATCH_PID=$!
wait_for 30 MariaDB "$LOG_DIR/mariadb.log" mariadb --no-defaults --socket="$MYSQL_SOCKET" -e 'select 1'
wait_for 5 "MariaDB pid file" "$LOG_DIR/mariadb.log" live_pid mariadb mariadbd

# ---- slurmdbd -------------------------------------------------------------------------------
mark_log "$LOG_DIR/slurmdbd.log"
slurmdbd > "$LOG_DIR/slurmdbd.out" 2>&1 9<&- || die "slurmdbd failed to start" "$LOG_DIR/slurmdbd.out" "$LOG_DIR/slurmdbd.log"
wait_for 30 slurmdbd "$LOG_DIR/slurmdbd.log" sacctmgr -n list cluster
if [[ -z "$(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster)" ]]; then
    sacctmgr -i add cluster "$CLUSTER_NAME" > /dev/null || die "could not add cluster to accounting" "$LOG_DIR/slurmdbd.log"
fi

# ---- slurmctld ------------------------------------------------------------------------------
# -i: carry on past unreadable state files rather than refuse to start.
ctld_started="$(date +%s)"
mark_log "$LOG_DIR/slurmctld.log"
slurmctld -i > "$LOG_DIR/slurmctld.out" 2>&1 9<&- || die "slurmctld failed to start" "$LOG_DIR/slurmctld.out" "$LOG_DIR/slurmctld.log"
wait_for 30 slurmctld "$LOG_DIR/slurmctld.log" scontrol ping

# ---- slurmd, one per node, each in its own UTS + mount namespace ----------------------------
declare -A slurmd_log_from
for name in $(node_names "$NODES"); do
    mark_log "$LOG_DIR/slurmd.$name.log"
    slurmd_log_from[$name]=$LOG_FROM
    start_slurmd "$name" || die "slurmd $name failed to start" "$LOG_DIR/slurmd.$name.out" "$LOG_DIR/slurmd.$name.log"
done
for name in $(node_names "$NODES"); do
    LOG_FROM=${slurmd_log_from[$name]}
    wait_for 10 "slurmd $name" "$LOG_DIR/slurmd.$name.log" live_pid "slurmd.$name" slurmd
    # stop.sh kills whatever is left in this namespace (slurmstepd, job tasks), even after an
    # unclean stop in which slurmd itself is gone.
    ns_id "$(live_pid "slurmd.$name" slurmd)" > "$RUN_DIR/slurmd.$name.ns"
done

# ---- wait until every node is up ------------------------------------------------------------
# Up = responding and schedulable: idle, or already running jobs that were pending at the last stop.
nodes_up() {
    local states
    states="$(sinfo -h -N -p debug -o '%T' 2>/dev/null)" || return 1
    [[ "$(grep -cEx 'idle|mixed|allocated|completing' <<< "$states")" == "$NODES" ]]
}
deadline=$((SECONDS + 60))
next_resume=$((SECONDS + 2))
until nodes_up; do
    if ((SECONDS >= deadline)); then
        sinfo -N -l >&2 || true
        logs=("$LOG_DIR/slurmctld.log")
        for name in $(node_names "$NODES"); do logs+=("$LOG_DIR/slurmd.$name.log"); done
        die "nodes did not come up within 60s" "${logs[@]}"
    fi
    # A node drained by an earlier unclean stop does not come back on its own.
    if ((SECONDS >= next_resume)) && sinfo -h -N -o '%T' | grep -q drain; then
        scontrol update nodename="$node_list" state=resume > /dev/null 2>&1 || true
        next_resume=$((SECONDS + 3))
    fi
    sleep 0.2
done

# Jobs still RUNNING in slurmctld's saved state but started before this start are ghosts of an
# unclean stop (their processes died with the old slurmd; slurmctld would wait for them forever,
# since the machine did not reboot). stop.sh cancels running jobs, so normally there are none.
ghosts=()
while IFS='|' read -r id started; do
    [[ -n "$id" ]] || continue
    started_s="$(date -d "$started" +%s 2>/dev/null)" || continue
    if ((started_s < ctld_started)); then ghosts+=("$id"); fi
done < <(squeue -h -t RUNNING,COMPLETING,SUSPENDED,CONFIGURING -o '%A|%S' 2>/dev/null || true)
if ((${#ghosts[@]})); then
    log "cancelling ${#ghosts[@]} job(s) left running by an unclean stop: ${ghosts[*]}"
    scancel "${ghosts[@]}" || true
fi

trap - EXIT
{ echo "# source this file to use the local SLURM cluster (written by slurm/start.sh)"
  echo "export SLURM_CONF=$SLURM_CONF_FILE"; } > "$STATE/env.sh"
log "started in $((SECONDS - t0))s; env in $STATE/env.sh"
print_env
