#!/usr/bin/env bash
# Stop a test cluster that start.sh or start_two_nodes.sh started: cancel its jobs, then stop every
# slurmd, slurmctld and (if the start script started it) munged by the PIDs recorded in RUN_DIR,
# and remove the network namespaces and links RUN_DIR/network lists. A PID is only signalled while
# /proc says it still runs the daemon that was started. Exit 1 if one survives.
#
#   tests/e2e/slurm/stop.sh [RUN_DIR]   /run/nlflow-slurm-test (start.sh's) unless given
set -uo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

run_dir="${1:-/run/nlflow-slurm-test}"
status=0

alive() {  # alive PID NAME: is PID still running the program NAME?
    [[ -r "/proc/$1/comm" && "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]]
}
pid_of() { cat "$run_dir/$1.pid" 2>/dev/null; }

state="$(cat "$run_dir/state_dir" 2>/dev/null || true)"
ctld_pid="$(pid_of slurmctld)"
if [[ -n "$state" && -f "$state/slurm.conf" && -n "$ctld_pid" ]] && alive "$ctld_pid" slurmctld; then
    # Running jobs first, so that no slurmstepd is left behind when slurmd goes.
    export SLURM_CONF="$state/slurm.conf"
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    for ((i = 0; i < 30; i++)); do
        [[ -z "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]] && break
        sleep 0.5
    done
fi

# slurmd.pid (one node) or slurmd-NODE.pid (one per node); the program is the part before "-".
names=()
for file in "$run_dir"/slurmd*.pid; do
    [[ -f "$file" ]] && names+=("$(basename "$file" .pid)")
done
names+=(slurmctld munged)
for name in "${names[@]}"; do
    [[ -f "$run_dir/$name.pid" ]] || continue
    pid="$(pid_of "$name")"
    program="${name%%-*}"
    if [[ -n "$pid" ]] && alive "$pid" "$program"; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 40; i++)); do
            alive "$pid" "$program" || break
            sleep 0.25
        done
        if alive "$pid" "$program"; then
            echo "stop.sh: $name (PID $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
        fi
        if alive "$pid" "$program"; then
            echo "stop.sh: could not stop $name (PID $pid)" >&2
            status=1
            continue
        fi
        echo "stop.sh: stopped $name (PID $pid)"
    fi
    rm -f "$run_dir/$name.pid"
done

# start_two_nodes.sh's network: lines "netns NAME" and "link NAME", removed once nothing uses them.
if [[ -f "$run_dir/network" ]] && ((status == 0)); then
    while read -r kind name; do
        case "$kind" in
            netns) exists=(ip netns pids "$name") remove=(ip netns delete "$name") ;;
            link) exists=(ip link show "$name") remove=(ip link delete "$name") ;;
            *) continue ;;
        esac
        "${exists[@]}" >/dev/null 2>&1 || continue
        if "${remove[@]}"; then
            echo "stop.sh: removed $kind $name"
        else
            echo "stop.sh: could not remove $kind $name" >&2
            status=1
        fi
    done < <(tac "$run_dir/network")
    rm -f "$run_dir/network"
fi

if [[ -n "$state" && -L /run/slurm/conf && "$(readlink /run/slurm/conf)" == "$state" ]]; then
    rm -f /run/slurm/conf
fi
((status == 0)) && rm -f "$run_dir/state_dir"
exit "$status"
