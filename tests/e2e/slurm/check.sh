#!/usr/bin/env bash
# Can this machine run the single-node test cluster? Exit 0 if so; otherwise print what is
# missing (one line) and exit 1. Install with: apt-get install slurm-wlm munge (Debian 12: 22.05).
set -uo pipefail
# The daemons live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for tool in munged munge unmunge slurmctld slurmd slurmstepd sbatch squeue scontrol sinfo scancel setpriv; do
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
exit 0
