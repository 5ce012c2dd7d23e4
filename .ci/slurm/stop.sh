#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by .ci/slurm/start.sh (slurmd, slurmctld, slurmdbd,
# MariaDB, munged), each by the pid it recorded. Packages, configuration, the job database and
# the munge key stay: start.sh brings everything back in a few seconds.
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

stop() {  # stop NAME PIDFILE: TERM, wait up to 10 s, then KILL
    local name=$1 pid
    pid=$(cat "$2" 2>/dev/null || true)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        pid=$(pgrep -x "$name" | head -1 || true)
    fi
    [ -n "$pid" ] || return 0
    echo "stopping $name ($pid)" >&2
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
}

stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop slurmdbd /run/slurm/slurmdbd.pid
stop mariadbd /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
exit 0
