#!/usr/bin/env bash
# Set up everything hpc-train needs on a Debian machine, skipping each step that is already done.
#
#   scripts/setup.sh python   the venv only: torch (CPU wheel), hpc-train and its dependencies
#   scripts/setup.sh all      also OpenMPI, SLURM, munge, MariaDB (apt), mpi4py, and Horovod built from source
#
# Reruns are quick: apt is skipped when its packages are installed, pip when the venv is complete.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
WHAT="${1:-all}"
PY="${PYTHON:-python3}"
VENV="$REPO/.venv"
TORCH_SPEC="torch==2.13.0"   # installed first and alone: any looser spec makes pip fetch a CUDA build
APT_PACKAGES=(openmpi-bin libopenmpi-dev slurm-wlm slurmdbd slurm-client munge mariadb-server mariadb-client
              libpmix-dev util-linux procps cmake g++ iproute2)

log() { echo "setup: $*" >&2; }

apt_step() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then log "apt packages present"; return; fi
    log "installing ${missing[*]}"
    local sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    # Debian's maintainer scripts try to start daemons; the tests start their own (slurm/start.sh).
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

venv_step() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$PY" -m venv "$VENV"
    fi
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
        log "installing $TORCH_SPEC"
        "${pip[@]}" install "$TORCH_SPEC"
    fi
    local extras="$1" target="."
    [[ -z "$extras" ]] || target=".[$extras]"
    local stamp="$VENV/.hpc-train-${extras:-base}-$(sha256sum pyproject.toml | cut -c1-12)"
    if [[ ! -e "$stamp" ]]; then
        log "installing hpc-train$target (editable)"
        "${pip[@]}" install -e "$target"
        "$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
        touch "$stamp"
    else
        log "venv up to date"
    fi
}

case "$WHAT" in
    python)
        venv_step "" ;;
    all)
        apt_step
        venv_step dev
        PYTHON="$VENV/bin/python" scripts/install_horovod.sh ;;
    *)
        echo "usage: $0 [python|all]" >&2; exit 2 ;;
esac
log "done"
