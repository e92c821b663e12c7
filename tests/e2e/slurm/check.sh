#!/usr/bin/env bash
# Can this machine run the single-node test cluster (start.sh), or with --two-nodes the two-node one
# (start_two_nodes.sh)? Exit 0 if so; otherwise print what is missing (one line) and exit 1.
# Install with: apt-get install slurm-wlm munge (Debian 12: 22.05).
set -uo pipefail
two_nodes=0
[[ "${1:-}" == "--two-nodes" ]] && two_nodes=1
# The daemons live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
tools=(munged munge unmunge slurmctld slurmd slurmstepd sbatch squeue scontrol sinfo scancel setpriv)
((two_nodes)) && tools+=(ip unshare nsenter mount hostname)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "SLURM/munge binaries not installed: ${missing[*]} (Debian: apt-get install slurm-wlm munge)"
    exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "starting slurmd/munged for the test cluster needs root (running as $(id -un))"
    exit 1
fi
id munge >/dev/null 2>&1 || { echo "no 'munge' user (the munge package creates it)"; exit 1; }
if ((two_nodes)); then
    # The real capability test: a network namespace, a veth pair into it, a UTS namespace inside.
    probe="nlfcheck$$"
    ip netns add "$probe" 2>/dev/null || { echo "cannot make a network namespace here (ip netns add failed)"; exit 1; }
    made=0
    ip link add "$probe" type veth peer name eth0 netns "$probe" 2>/dev/null &&
        unshare --mount --propagation private --uts -- nsenter --net="/run/netns/$probe" -- \
            sh -c 'hostname probe && mount --bind /dev/null /etc/hostname' 2>/dev/null &&
        made=1
    ip link delete "$probe" 2>/dev/null
    ip netns delete "$probe" 2>/dev/null
    ((made)) || { echo "cannot link a network namespace to this machine with veth, or name it (ip link add ... veth, unshare --mount --uts, nsenter --net, mount --bind)"; exit 1; }
fi
exit 0
