#!/usr/bin/env bash
# Run a command on a node of the two-node test cluster (start_two_nodes.sh): in the network, host
# name and mount namespaces of that node's slurmd, found by the PID start_two_nodes.sh recorded.
#
#   tests/e2e/slurm/on_node.sh NODE COMMAND...      e.g. on_node.sh nlfnode1 hostname
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
node="${1:?usage: on_node.sh NODE COMMAND...}"
shift
pid="$(cat "/run/nlflow-slurm-two-nodes/slurmd-$node.pid" 2>/dev/null)" ||
    { echo "on_node.sh: no node $node is running (start_two_nodes.sh starts nlfnode1 and nlfnode2)" >&2; exit 1; }
[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == slurmd ]] || { echo "on_node.sh: node $node's slurmd (PID $pid) is not running" >&2; exit 1; }
exec nsenter --target "$pid" --net --uts --mount -- "$@"
