#!/usr/bin/env bash
# Stop the test cluster tests/e2e/slurm/start.sh started: cancel its jobs, then stop slurmd, slurmctld
# and (if start.sh started it) munged by the PIDs recorded in /run/nlflow-slurm-test. A PID is only
# signalled while /proc says it still runs the daemon that was started. Exit 1 if one survives.
#
#   tests/e2e/slurm/stop.sh
set -uo pipefail

run_dir=/run/nlflow-slurm-test
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

for name in slurmd slurmctld munged; do
    [[ -f "$run_dir/$name.pid" ]] || continue
    pid="$(pid_of "$name")"
    if [[ -n "$pid" ]] && alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 40; i++)); do
            alive "$pid" "$name" || break
            sleep 0.25
        done
        if alive "$pid" "$name"; then
            echo "stop.sh: $name (PID $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
        fi
        if alive "$pid" "$name"; then
            echo "stop.sh: could not stop $name (PID $pid)" >&2
            status=1
            continue
        fi
        echo "stop.sh: stopped $name (PID $pid)"
    fi
    rm -f "$run_dir/$name.pid"
done

if [[ -n "$state" && -L /run/slurm/conf && "$(readlink /run/slurm/conf)" == "$state" ]]; then
    rm -f /run/slurm/conf
fi
((status == 0)) && rm -f "$run_dir/state_dir"
exit "$status"
