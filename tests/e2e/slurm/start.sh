#!/usr/bin/env bash
# Start a single-node SLURM on 127.0.0.1 for tests/e2e/test_slurm.py (root, Debian's slurm-wlm and
# munge; tests/e2e/slurm/check.sh says what is missing).
#
#   tests/e2e/slurm/start.sh STATE_DIR [PARTITION ...]   the first partition is the default (cpu gpu)
#   SLURM_CONF=STATE_DIR/slurm.conf squeue ...        talk to it
#   tests/e2e/slurm/stop.sh                               stop what this started, by PID
#
# STATE_DIR gets slurm.conf, gres.conf, state, spool, the daemons' logs and slurmctld's job
# completion records (log/jobcomp.txt). /run/nlflow-slurm-test keeps the PIDs of the daemons
# started here, so stop.sh finds them even after STATE_DIR is gone, and a start after a killed
# test run stops the leftovers (by those PIDs) instead of failing on busy ports.
# Start order: munged (unless one already answers) -> slurmctld -> slurmd. The node advertises
# NLFLOW_SLURM_CPUS CPUs (16), NLFLOW_SLURM_MEM_MB MB (64000) and one fake GPU so that the
# project's real per-rule requests fit; ports NLFLOW_SLURMCTLD_PORT (6817), NLFLOW_SLURMD_PORT (6818).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/e2e/slurm/lib.sh
source "$here/lib.sh"
state="${1:?usage: start.sh STATE_DIR [PARTITION ...]}"
shift
partitions=("$@")
((${#partitions[@]})) || partitions=(cpu gpu)
cpus="${NLFLOW_SLURM_CPUS:-16}"
mem_mb="${NLFLOW_SLURM_MEM_MB:-64000}"
ctld_port="${NLFLOW_SLURMCTLD_PORT:-6817}"
slurmd_port="${NLFLOW_SLURMD_PORT:-6818}"
run_dir=/run/nlflow-slurm-test

"$here/check.sh" || exit 1

if compgen -G "$run_dir/*.pid" >/dev/null; then
    echo "start.sh: stopping a test cluster left running by an earlier start"
    "$here/stop.sh" "$run_dir" || true
fi

for port in "$ctld_port" "$slurmd_port"; do
    if port_busy 127.0.0.1 "$port"; then
        echo "start.sh: port $port on 127.0.0.1 is in use (another slurmctld/slurmd?); set NLFLOW_SLURMCTLD_PORT / NLFLOW_SLURMD_PORT" >&2
        exit 1
    fi
done

# Inside a job, snakemake-executor-plugin-slurm-jobstep runs the rule through `srun` with every
# SLURM_* variable removed, SLURM_CONF included; srun then reads /etc/slurm/slurm.conf or, where
# that is absent, /run/slurm/conf/slurm.conf (where a configless slurmd keeps its copy). The
# latter is pointed at this cluster (stop.sh removes the link): while it runs, it is this
# machine's default cluster.
if [[ -e /etc/slurm/slurm.conf ]]; then
    echo "start.sh: /etc/slurm/slurm.conf exists (a real SLURM node?): job steps would read it instead of the test cluster's" >&2
    exit 1
fi
if [[ -e /run/slurm/conf && ! -L /run/slurm/conf ]]; then
    echo "start.sh: /run/slurm/conf exists and is not a link this script made; not touching it" >&2
    exit 1
fi

host="$(hostname -s)"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
mkdir -p "$state"/{ctld,spool,run,log} "$run_dir"
echo "$state" >"$run_dir/state_dir"

CTLD_HOST="$host" CTLD_ADDR=127.0.0.1 CTLD_PORT="$ctld_port" SLURMD_PORT="$slurmd_port" NODELIST="$host"
MUNGE_SOCKET=/run/munge/munge.socket.2  # munge's default: the machine's munged if one runs
NODE_LINES="NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN"$'\n'
write_slurm_config
export SLURM_CONF="$state/slurm.conf"
echo "export SLURM_CONF=$SLURM_CONF" >"$state/env.sh"
mkdir -p /run/slurm
ln -sfn "$state" /run/slurm/conf

if munge_works >/dev/null 2>&1; then
    echo "start.sh: a munged already answers; using it (stop.sh leaves it alone)"
else
    start_munged
fi

start_daemon slurmctld "$state/log/slurmctld.stderr.log" slurmctld -D -f "$SLURM_CONF"
ctld_up() { scontrol ping | grep -q UP; }
wait_for 60 slurmctld "slurmctld (scontrol ping)" ctld_up

start_daemon slurmd "$state/log/slurmd.stderr.log" slurmd -D -f "$SLURM_CONF" -N "$host"
node_idle() { [[ "$(sinfo -h -n "$host" -o %T | head -n 1)" == idle ]]; }
wait_for 60 slurmd "node $host to be idle" node_idle

echo "start.sh: SLURM up on $host (127.0.0.1): partitions ${partitions[*]} (default ${partitions[0]}), $cpus CPUs, $mem_mb MB, gres gpu:1"
echo "start.sh: SLURM_CONF=$SLURM_CONF"
