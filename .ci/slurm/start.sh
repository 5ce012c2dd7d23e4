#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests/workflow/test_slurm.py and for trying
# profiles/slurm by hand: Debian's slurm-wlm 22.05 (slurmctld + slurmd), munge, and job
# accounting through slurmdbd + a local MariaDB, because snakemake-executor-plugin-slurm polls
# job states with `sacct` and validates `slurm_account` with `sacctmgr`.
#
#   sudo .ci/slurm/start.sh          # install (first time), configure, start, wait for the node
#   .ci/slurm/stop.sh                # stop the daemons again (configuration and packages stay)
#
# Idempotent: a second run leaves running daemons alone (restarting them only when the
# generated configuration changed) and only waits for the node to be idle.
# No systemd needed: every daemon is started directly. Works in container-like sandboxes
# (gVisor, docker): no cgroup plugins (proctrack/linuxproc, task/none, jobacct_gather/linux).
#
# Environment (all optional):
#   TYR_SLURM_CLUSTER    cluster name                      (tyr)
#   TYR_SLURM_PARTITION  the one partition, default one     (tyr)
#   TYR_SLURM_ACCOUNT    account created for root + $SUDO_USER (tyr)
#   TYR_SLURM_ACCOUNTING slurmdbd | none                    (slurmdbd)
#                        none: no MariaDB/slurmdbd; `sacct` then fails, so Snakemake must be
#                        run with `--slurm-status-command squeue` and no slurm_account.
#   TYR_SLURM_MEM_MB     memory the node offers, MiB        (physical memory - 1 GiB)
#   TYR_SLURM_CPUS       CPUs the node offers               (nproc)
set -euo pipefail

CLUSTER=${TYR_SLURM_CLUSTER:-tyr}
PARTITION=${TYR_SLURM_PARTITION:-tyr}
ACCOUNT=${TYR_SLURM_ACCOUNT:-tyr}
ACCOUNTING=${TYR_SLURM_ACCOUNTING:-slurmdbd}
MARK="# written by tyr .ci/slurm/start.sh"

log() { printf '[slurm-start %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
case "$ACCOUNTING" in slurmdbd|none) ;; *) die "TYR_SLURM_ACCOUNTING must be slurmdbd or none" ;; esac

# Wait until a command succeeds: wait_for SECONDS DESCRIPTION CMD...
wait_for() {
    local t=$1 what=$2; shift 2
    local end=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.5
    done
    log "$what: ok"
}

running() { pgrep -x "$1" >/dev/null 2>&1; }

# Stop one daemon we started (by its pid file, else by its exact process name), wait for it.
stop_daemon() {
    local name=$1 pidfile=$2 pid=""
    [ -s "$pidfile" ] && pid=$(cat "$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || pid=$(pgrep -x "$name" | head -1 || true)
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- packages
PKGS=(munge slurmctld slurmd slurm-client)
[ "$ACCOUNTING" = slurmdbd ] && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Package scripts must not try to start services (no init system here): we start them below.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $policy_added = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
for b in munged slurmctld slurmd sinfo sbatch sacct; do command -v $b >/dev/null || die "$b missing after install"; done

# ---------------------------------------------------------------- node description
HOST=$(hostname -s)
CPUS=${TYR_SLURM_CPUS:-$(nproc)}
MEM_TOTAL=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MEM=${TYR_SLURM_MEM_MB:-$((MEM_TOTAL > 2048 ? MEM_TOTAL - 1024 : MEM_TOTAL / 2))}

mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/slurm
chown -R slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm /run/slurm

if [ "$ACCOUNTING" = slurmdbd ]; then
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
# sacct shows the plugin's --comment (rule_<name>[_wildcards_...]): which rule a job ran.
AccountingStoreFlags=job_comment"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi

NEW_CONF=$(cat <<EOF
$MARK (edits are overwritten)
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
# No cgroups in a sandbox: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Use the node description below as it is (the sandbox's topology is not the host's).
SlurmdParameters=config_overrides
MpiDefault=none
$ACCT_LINES
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue/scontrol for 10 minutes (status fallback).
MinJobAge=600
KillWait=5
InactiveLimit=0
Waittime=0
SlurmdTimeout=120
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)

conf_changed=0
if [ -f /etc/slurm/slurm.conf ] && ! grep -qF "$MARK" /etc/slurm/slurm.conf; then
    die "/etc/slurm/slurm.conf exists and was not written by this script: not touching it"
fi
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$NEW_CONF" ]; then
    printf '%s\n' "$NEW_CONF" >/etc/slurm/slurm.conf
    chmod 644 /etc/slurm/slurm.conf
    conf_changed=1
    log "wrote /etc/slurm/slurm.conf (node $HOST: $CPUS CPUs, $MEM MiB; partition $PARTITION)"
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge && chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    stop_daemon munged /run/munge/munged.pid
    rm -f /run/munge/munge.socket.2*
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munge sh -c 'munge -n | unmunge' || die "munged did not come up (see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- accounting: MariaDB + slurmdbd
if [ "$ACCOUNTING" = slurmdbd ]; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "initialising MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    if ! mariadb-admin ping >/dev/null 2>&1; then
        log "starting mariadbd"
        # Small buffers: this database holds a few hundred job records.
        nohup /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
            --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
            --bind-address=127.0.0.1 --innodb-buffer-pool-size=64M --performance-schema=OFF \
            >/var/log/slurm/mariadb.log 2>&1 </dev/null &
        wait_for 60 mariadb mariadb-admin ping || die "MariaDB did not come up (see /var/log/slurm/mariadb.log)"
    fi
    # Local database user for slurmdbd (socket-only, random password kept in slurmdbd.conf).
    if [ -f /etc/slurm/slurmdbd.conf ] && grep -qF "$MARK" /etc/slurm/slurmdbd.conf; then
        DBPASS=$(sed -n 's/^StoragePass=//p' /etc/slurm/slurmdbd.conf)
    else
        DBPASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    fi
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
                ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
                CREATE DATABASE IF NOT EXISTS slurm_acct_db;
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    NEW_DBD=$(cat <<EOF
$MARK (edits are overwritten)
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DBPASS
EOF
)
    if [ "$(cat /etc/slurm/slurmdbd.conf 2>/dev/null)" != "$NEW_DBD" ]; then
        [ -f /etc/slurm/slurmdbd.conf ] && ! grep -qF "$MARK" /etc/slurm/slurmdbd.conf \
            && die "/etc/slurm/slurmdbd.conf exists and was not written by this script: not touching it"
        printf '%s\n' "$NEW_DBD" >/etc/slurm/slurmdbd.conf
        conf_changed=1
    fi
    chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
    if [ $conf_changed = 1 ] || ! running slurmdbd; then
        stop_daemon slurmdbd /run/slurm/slurmdbd.pid
        log "starting slurmdbd"
        /usr/sbin/slurmdbd
        wait_for 60 slurmdbd sacctmgr -n list cluster || die "slurmdbd did not answer (see /var/log/slurm/slurmdbd.log)"
    fi
    # Cluster, account and users (associations are enforced, so they must exist before jobs).
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
        || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="tyr local tests" organization=tyr >/dev/null
    for u in root ${SUDO_USER:-}; do
        sacctmgr -n -P list assoc user="$u" account="$ACCOUNT" format=user | grep -qx "$u" \
            || sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" >/dev/null
    done
fi

# ---------------------------------------------------------------- slurmctld + slurmd
if [ $conf_changed = 1 ] || ! running slurmctld; then
    stop_daemon slurmctld /run/slurm/slurmctld.pid
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
wait_for 60 slurmctld scontrol ping || die "slurmctld did not answer (see /var/log/slurm/slurmctld.log)"
if [ $conf_changed = 1 ] || ! running slurmd; then
    stop_daemon slurmd /run/slurm/slurmd.pid
    log "starting slurmd"
    /usr/sbin/slurmd
fi

node_state() { sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -1; }
# A node left "down"/"drained" by an earlier run (e.g. a daemon restart) is resumed.
for _ in $(seq 1 120); do
    st=$(node_state)
    case "$st" in
        idle|mix|alloc) break ;;
        down*|drain*|drng*|fail*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
st=$(node_state)
case "$st" in
    idle|mix|alloc) log "node $HOST is $st; partition $PARTITION ready" ;;
    *) sinfo -N -l >&2 || true
       die "node $HOST did not become idle (state '$st'; see /var/log/slurm/slurmd.log)" ;;
esac
sinfo
