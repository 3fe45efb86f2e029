#!/usr/bin/env bash
# Is the local SLURM cluster up?  Exit 0 and print its node count when every daemon runs,
# exit 1 (printing 0) otherwise.
#
#   slurm/status.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if cluster_up; then
    running_nodes
    exit 0
fi
echo 0
exit 1
