#!/usr/bin/env bash
# Start a two-node SLURM on this machine for tests/e2e/test_slurm_two_nodes.py (root, Debian's
# slurm-wlm and munge, `ip netns`; `check.sh --two-nodes` says what is missing).
#
#   tests/e2e/slurm/start_two_nodes.sh STATE_DIR [PARTITION ...]   the first partition is the default
#   SLURM_CONF=STATE_DIR/slurm.conf squeue ...                  talk to it (from this machine)
#   tests/e2e/slurm/on_node.sh NODE COMMAND...                  run a command on node NODE
#   tests/e2e/slurm/stop.sh /run/nlflow-slurm-two-nodes         stop it, by PID, and remove the network
#
# Each node is a network namespace (nlfnode1, nlfnode2) with its own address on a private link, a
# bridge on this machine: 10.213.0.2 and 10.213.0.3 (NLFLOW_TWO_NODES_NET=10.213.0 sets the first
# three numbers); the machine itself, the login and controller host, is 10.213.0.1. A node's slurmd
# also gets its own host name (a UTS namespace) and, in a mount namespace of its own, STATE_DIR as
# /etc/slurm and STATE_DIR/hosts as /etc/hosts (the nodes' names); everything else, the project's
# folders included, is the one filesystem both nodes share. Every job process inherits all that
# from its node's slurmd. munged is a private one on its own socket, slurmctld runs on this machine
# (port NLFLOW_TWO_NODES_CTLD_PORT, 6827), so that the single-node test cluster (start.sh, ports
# 6817/6818, the machine's munged) can run at the same time. Each node advertises NLFLOW_SLURM_CPUS
# CPUs (16), NLFLOW_SLURM_MEM_MB MB (64000) and one fake GPU.
#
# /run/nlflow-slurm-two-nodes keeps the daemons' PIDs and the names of the namespaces and links
# made here, so that stop.sh finds them even after STATE_DIR is gone, and a start after a killed
# test run removes the leftovers first.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/e2e/slurm/lib.sh
source "$here/lib.sh"
state="${1:?usage: start_two_nodes.sh STATE_DIR [PARTITION ...]}"
shift
partitions=("$@")
((${#partitions[@]})) || partitions=(cpu gpu)
cpus="${NLFLOW_SLURM_CPUS:-16}"
mem_mb="${NLFLOW_SLURM_MEM_MB:-64000}"
net="${NLFLOW_TWO_NODES_NET:-10.213.0}"
run_dir=/run/nlflow-slurm-two-nodes
nodes=(nlfnode1 nlfnode2)
bridge=nlfbr0
CTLD_HOST="$(hostname -s)" CTLD_ADDR="$net.1" CTLD_PORT="${NLFLOW_TWO_NODES_CTLD_PORT:-6827}" SLURMD_PORT=6818
NODELIST="nlfnode[1-2]"
MUNGE_SOCKET="$run_dir/munge/munge.socket"

"$here/check.sh" --two-nodes || exit 1

if compgen -G "$run_dir/*.pid" >/dev/null || [[ -f "$run_dir/network" ]]; then
    echo "start_two_nodes.sh: stopping a test cluster left running by an earlier start"
    "$here/stop.sh" "$run_dir" || true
fi
refuse() { echo "start_two_nodes.sh: $1" >&2; exit 1; }
for node in "${nodes[@]}"; do
    ip netns pids "$node" >/dev/null 2>&1 && refuse "a network namespace $node exists that this script did not make; not touching it"
done
ip link show "$bridge" >/dev/null 2>&1 && refuse "a network link $bridge exists that this script did not make; not touching it"
ip -4 -o addr show | grep -q " $net\." && refuse "addresses $net.* are in use here; set NLFLOW_TWO_NODES_NET to three free numbers (e.g. 10.214.0)"
port_busy 127.0.0.1 "$CTLD_PORT" && refuse "port $CTLD_PORT is in use; set NLFLOW_TWO_NODES_CTLD_PORT"

mkdir -p "$state"
state="$(cd "$state" && pwd)"
mkdir -p "$state"/{ctld,spool,run,log} "$run_dir/munge"
echo "$state" >"$run_dir/state_dir"

# The private link: a bridge on this machine (the controller's address) and one veth pair per node.
network() {  # network KIND NAME COMMAND...: run COMMAND, then record NAME for stop.sh
    local kind="$1" name="$2"
    shift 2
    "$@" || fail "could not make $kind $name: $*"
    echo "$kind $name" >>"$run_dir/network"
}
network link "$bridge" ip link add "$bridge" type bridge
ip addr add "$CTLD_ADDR/24" dev "$bridge"
ip link set "$bridge" up
hosts="127.0.0.1 localhost"$'\n'"$CTLD_ADDR $CTLD_HOST"$'\n'
NODE_LINES=""
for i in "${!nodes[@]}"; do
    node="${nodes[$i]}" addr="$net.$((i + 2))"
    network netns "$node" ip netns add "$node"
    network link "$node-h" ip link add "$node-h" type veth peer name eth0 netns "$node"
    ip link set "$node-h" master "$bridge"
    ip link set "$node-h" up
    ip -n "$node" addr add "$addr/24" dev eth0
    ip -n "$node" link set eth0 up
    ip -n "$node" link set lo up
    hosts+="$addr $node"$'\n'
    NODE_LINES+="NodeName=$node NodeAddr=$addr NodeHostname=$node Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN"$'\n'
done
printf "%s" "$hosts" >"$state/hosts"

write_slurm_config
export SLURM_CONF="$state/slurm.conf"
echo "export SLURM_CONF=$SLURM_CONF" >"$state/env.sh"

start_munged --pid-file="$run_dir/munge/munged.pid" --seed-file="$run_dir/munge/munged.seed" \
    --log-file="$run_dir/munge/munged.log"

start_daemon slurmctld "$state/log/slurmctld.stderr.log" slurmctld -D -f "$SLURM_CONF"
ctld_up() { scontrol ping | grep -q UP; }
wait_for 60 slurmctld "slurmctld (scontrol ping)" ctld_up

# The node's slurmd in its namespaces: a mount and a host name namespace of its own (unshare),
# the node's network namespace (nsenter; `ip netns exec` would remount /sys and with it hide the
# cgroup mounts slurmd reads); the bind mounts stay in the new mount namespace, so this machine's
# /etc stays as it is.
mkdir -p /etc/slurm
for node in "${nodes[@]}"; do
    mkdir -p "$state/spool/$node"
    start_daemon "slurmd-$node" "$state/log/slurmd-$node.stderr.log" \
        unshare --mount --propagation private --uts -- nsenter --net="/run/netns/$node" -- sh -c \
        'hostname "$1" && mount --bind "$2" /etc/slurm && mount --bind "$2/hosts" /etc/hosts && exec slurmd -D -f /etc/slurm/slurm.conf -N "$1"' \
        sh "$node" "$state"
done
nodes_idle() { [[ "$(sinfo -h -n "$NODELIST" -o '%n %T' | sort | tr '\n' ' ')" == "nlfnode1 idle nlfnode2 idle " ]]; }
wait_for 60 "slurmd-${nodes[1]}" "nodes ${nodes[*]} to be idle" nodes_idle

echo "start_two_nodes.sh: SLURM up: nodes ${nodes[*]} ($net.2, $net.3) behind $bridge ($CTLD_ADDR, the controller), partitions ${partitions[*]} (default ${partitions[0]}), $cpus CPUs, $mem_mb MB, gres gpu:1 each"
echo "start_two_nodes.sh: SLURM_CONF=$SLURM_CONF"
