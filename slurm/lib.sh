# Shared by start.sh, stop.sh and status.sh: paths of the local cluster and its daemons.
# Sourced, never run. Everything the cluster writes lives under $STATE.

SLURM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SLURM_DIR/.." && pwd)"
STATE="${HPC_TRAIN_SLURM_STATE:-$REPO/.slurm-state}"
# Ports: slurmctld = base, slurmdbd = base+1, node nK = base+1+K. Away from the 6817-6819 defaults
# so a system SLURM on the same machine does not clash.
PORT_BASE="${HPC_TRAIN_SLURM_PORT_BASE:-16817}"
CLUSTER_NAME="hpctrain"

RUN_DIR="$STATE/run"
LOG_DIR="$STATE/log"
# munged refuses a socket unless every folder above it is traversable by all; a clone inside a
# `mktemp -d` folder (mode 700) is not, so then the socket gets a folder of its own under /tmp.
traversable_by_all() {
    local dir="$1"
    while [[ "$dir" != "/" ]]; do
        [[ -d "$dir" && "$(stat -c %A "$dir" | cut -c10)" =~ [xt] ]] || return 1
        dir="$(dirname "$dir")"
    done
}
MUNGE_SOCKET_DIR="$STATE/munge"
if ! traversable_by_all "$(dirname "$STATE")"; then
    MUNGE_SOCKET_DIR="/tmp/hpc-train-munge-$(printf '%s' "$STATE" | sha1sum | cut -c1-12)"
fi
MUNGE_SOCKET="$MUNGE_SOCKET_DIR/munge.socket"
MYSQL_SOCKET="$STATE/mysql/mysqld.sock"
SLURM_CONF_FILE="$STATE/slurm.conf"
NODES_FILE="$STATE/nodes"

# lock_state: one start/stop at a time (start.sh runs stop.sh inside its own lock).
lock_state() {
    [[ -z "${HPC_TRAIN_SLURM_LOCKED:-}" ]] || return 0
    mkdir -p "$STATE"
    exec 9< "$STATE"
    flock -w 300 9 || { echo "slurm: another start/stop holds $STATE" >&2; exit 1; }
    export HPC_TRAIN_SLURM_LOCKED=1
}

log() { printf 'slurm: %s\n' "$*" >&2; }

die() {
    # die MESSAGE [LOGFILE...]: say what failed, show the end of the logs that explain it, exit 1.
    local msg="$1"; shift
    log "ERROR: $msg"
    local f
    for f in "$@"; do
        [[ -f "$f" ]] || continue
        printf -- '--- last lines of %s ---\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
    exit 1
}

node_names() {
    # node_names N -> "n1 n2 ... nN"
    local i out=()
    for ((i = 1; i <= $1; i++)); do out+=("n$i"); done
    echo "${out[*]}"
}

# The daemons in start order, each "name:comm" (comm = /proc/PID/comm, checked before any kill so
# a stale pid file whose pid was reused never gets an unrelated process killed).
core_daemons() { echo "munged:munged mariadb:mariadbd slurmdbd:slurmdbd slurmctld:slurmctld"; }

pid_file() { echo "$RUN_DIR/$1.pid"; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# live_pid NAME COMM: print the pid from NAME's pid file if that process runs and is COMM.
live_pid() {
    local f pid comm
    f="$(pid_file "$1")"
    [[ -s "$f" ]] || return 1
    pid="$(tr -dc '0-9' < "$f")"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" == "$2"* ]] || return 1
    echo "$pid"
}

running_nodes() {
    # Node count recorded by the last start, or 0.
    if [[ -s "$NODES_FILE" ]]; then tr -dc '0-9' < "$NODES_FILE"; else echo 0; fi
}

# cluster_up: 0 when every daemon of the recorded node count runs.
cluster_up() {
    local n d name
    n="$(running_nodes)"
    [[ "$n" -ge 1 ]] || return 1
    for d in $(core_daemons); do
        live_pid "${d%%:*}" "${d##*:}" > /dev/null || return 1
    done
    for name in $(node_names "$n"); do
        live_pid "slurmd.$name" slurmd > /dev/null || return 1
    done
}

# ns_id PID: the UTS and mount namespaces of PID, "uts:[N] mnt:[M]". start.sh gives each node
# fresh ones, so together they name that node's processes (and no others) for stop.sh.
ns_id() {
    local uts mnt
    uts="$(readlink "/proc/$1/ns/uts" 2>/dev/null)" || return 1
    mnt="$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" || return 1
    echo "$uts $mnt"
}

# wait_gone SECONDS PID...: 0 once none of the pids runs.
wait_gone() {
    local deadline=$((SECONDS + $1)) p alive; shift
    while :; do
        alive=0
        for p in "$@"; do if alive "$p"; then alive=1; fi; done
        ((alive)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# kill_now PID...: SIGKILL and wait.
kill_now() {
    [[ $# -gt 0 && -n "$1" ]] || return 0
    kill -KILL "$@" 2>/dev/null || true
    wait_gone 5 "$@" || log "WARNING: could not kill: $*"
}

# namespace_pids NS: the pids living in namespaces NS (ns_id: a node's slurmd, its slurmstepd and
# the job tasks they launched; all of them exist only because start.sh created those namespaces).
namespace_pids() {
    local d pid
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        if [[ "$(ns_id "$pid" || true)" == "$1" ]]; then echo "$pid"; fi
    done
    return 0
}

# start_slurmd NAME: node NAME's slurmd in a UTS + mount namespace of its own (hostname NAME), so
# that its processes (slurmstepd, job tasks) can be told apart and killed together (kill_node).
start_slurmd() {
    unshare --mount --uts -- /bin/bash -c '
        set -e
        mount --bind "$1" /etc/hosts
        hostname "$2"
        exec slurmd -N "$2"' slurmd-ns "$STATE/hosts" "$1" > "$LOG_DIR/slurmd.$1.out" 2>&1 9<&-
}

# kill_node slurmd.NAME: SIGKILL every process in that node's namespaces (as a power cut would),
# then forget them. PMIx sockets of killed steps would make a rerun of the same step id fail in bind().
kill_node() {
    local f="$RUN_DIR/$1.ns" ns=""
    [[ -s "$f" ]] && ns="$(< "$f")"
    if [[ -n "$ns" && "$ns" != "$(ns_id $$)" ]]; then  # never our own (a start without namespaces)
        # shellcheck disable=SC2046
        kill_now $(namespace_pids "$ns")
    fi
    rm -f "$STATE/spool/${1#slurmd.}/stepd.slurm.pmix."* "$f" "$(pid_file "$1")"
}
