# Shell functions shared by start.sh (one node on 127.0.0.1) and start_two_nodes.sh (two network
# namespaces): sourced, never run. The caller sets `here` (this folder), `run_dir` (where the PIDs
# of the daemons it starts are kept, for stop.sh) and `state` (the cluster's state folder).

# The daemons live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# Start a daemon in foreground mode in a session of its own (a Ctrl-C meant for the test does not
# reach it) and record its PID as $run_dir/NAME.pid; setsid (and ip netns exec, unshare, and a
# shell's exec after it) execs in place, so $! is the daemon itself.
start_daemon() {  # start_daemon NAME LOG COMMAND...
    local name="$1" log="$2"
    shift 2
    setsid "$@" </dev/null >>"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$run_dir/$name.pid"
    echo "$(basename "$0"): $name started, PID $pid"
}

fail() {  # fail MESSAGE: print it and the daemons' log tails, stop what was started, exit 1
    echo "$(basename "$0"): $1" >&2
    for log in "$state"/log/*.log; do
        [[ -f "$log" ]] && { echo "--- $log (tail)" >&2; tail -n 20 "$log" >&2; }
    done
    "$here/stop.sh" "$run_dir" >&2 || true
    exit 1
}

wait_for() {  # wait_for SECONDS DAEMON DESCRIPTION COMMAND...: DAEMON must stay alive meanwhile
    local seconds="$1" daemon="$2" what="$3"
    shift 3
    local pid
    pid="$(cat "$run_dir/$daemon.pid")"
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        [[ -d "/proc/$pid" ]] || fail "$daemon (PID $pid) exited while waiting for $what"
        sleep 0.5
    done
    fail "timed out after ${seconds}s waiting for $what"
}

port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }  # port_busy ADDRESS PORT

# The cluster's slurm.conf and gres.conf from the templates next to this file. Needs CTLD_HOST,
# CTLD_ADDR, CTLD_PORT, SLURMD_PORT, MUNGE_SOCKET, NODE_LINES (one NodeName line per node),
# NODELIST (the nodes in hostlist form) and partitions (names; the first is the default).
write_slurm_config() {
    local partition_lines="" default="YES" name
    for name in "${partitions[@]}"; do
        # MaxTime unlimited: the project's rules ask for up to 48 h, and EnforcePartLimits=ALL would
        # reject them at submission otherwise.
        partition_lines+="PartitionName=$name Nodes=$NODELIST Default=$default MaxTime=INFINITE State=UP"$'\n'
        default="NO"
    done
    local substitute=(sed -e "s|@STATE@|$state|g" -e "s|@CTLD_HOST@|$CTLD_HOST|g" -e "s|@CTLD_ADDR@|$CTLD_ADDR|g"
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g"
        -e "s|@NODELIST@|$NODELIST|g")
    "${substitute[@]}" "$here/slurm.conf.in" |
        awk -v nodes="$NODE_LINES" -v parts="$partition_lines" \
            '{ if ($0 == "@NODES@") printf "%s", nodes; else if ($0 == "@PARTITIONS@") printf "%s", parts; else print }' \
            >"$state/slurm.conf"
    "${substitute[@]}" "$here/gres.conf.in" >"$state/gres.conf"
}

munge_works() { munge --socket="$MUNGE_SOCKET" -n | unmunge --socket="$MUNGE_SOCKET"; }

start_munged() {  # start_munged [munged options]: as the munge user, on $MUNGE_SOCKET
    mkdir -p /var/lib/munge /var/log/munge "$(dirname "$MUNGE_SOCKET")"
    chown munge:munge /var/lib/munge /var/log/munge "$(dirname "$MUNGE_SOCKET")"
    chmod 0755 "$(dirname "$MUNGE_SOCKET")"
    start_daemon munged "$state/log/munged.log" setpriv --reuid=munge --regid=munge --clear-groups \
        /usr/sbin/munged -F --socket="$MUNGE_SOCKET" "$@"
    wait_for 20 munged "munged" munge_works
}
