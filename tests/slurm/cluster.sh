#!/usr/bin/env bash
# A real two-node Slurm cluster on this one machine, for normia's launcher tests.
#
#   tests/slurm/cluster.sh start [STATE_DIR]   install packages if missing, write config, start daemons, wait
#   tests/slurm/cluster.sh status [STATE_DIR]  daemons alive? nodes idle? (exit 0 only when ready)
#   tests/slurm/cluster.sh stop [STATE_DIR]    stop the daemons this script started (by their pid files)
#
# Why it looks like this (see FACTS.md): Debian 12's Slurm 22.05 is built with MULTIPLE_SLURMD, so two
# `slurmd -N nodeX` on 127.0.0.1 with their own ports make a real 2-node cluster; fake GPUs are GRES backed by
# char devices (regular files are refused); sacct needs slurmdbd + MariaDB, and submitit needs sacct to see a
# cancelled job; a requeued job waits cred_expire seconds before it restarts, so it is 10 here; the node names
# do not resolve, so jobs must export MASTER_ADDR=127.0.0.1. Needs root and apt (Debian); no systemd used.
# Everything lives under STATE_DIR (default $NORMIA_SLURM_DIR or /tmp/normia-slurm), a private folder of this user
# (0700, checked before each use); nothing in /etc changes.
set -euo pipefail

CMD="${1:-}"
S="${2:-${NORMIA_SLURM_DIR:-/tmp/normia-slurm}}"
CLUSTER=normia
HOST="$(hostname -s)"
CTLD_PORT="${NORMIA_SLURM_PORT_BASE:-16817}"           # slurmctld; +1 slurmdbd; +2/+3 the two slurmd
DBD_PORT=$((CTLD_PORT + 1))
NODE1_PORT=$((CTLD_PORT + 2))
NODE2_PORT=$((CTLD_PORT + 3))
DB_PORT=$((CTLD_PORT + 4))                            # MariaDB, loopback only
DB_PASS=normia-test-only
DAEMONS=(slurmd-node1 slurmd-node2 slurmctld slurmdbd mysqld munged)  # stop order
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The state folder holds the munge key, the daemons' configs and pid files, and root runs what it finds there: it
# must be this user's own, private folder. Made with mode 0700 when missing (mkdir fails if someone made it first);
# an existing one that is a link, belongs to another user or can be written by others is refused, never reused.
private_state_dir() {
    [[ "$S" == /* ]] || die "STATE_DIR must be an absolute path: $S"
    if [[ ! -e "$S" && ! -L "$S" ]]; then
        mkdir -p "$(dirname "$S")"
        mkdir -m 700 "$S" 2>/dev/null || [[ -d "$S" ]] || die "cannot create $S"
    fi
    [[ -L "$S" ]] && die "$S is a symbolic link: refusing to use it (remove it, or pass another STATE_DIR)"
    [[ -d "$S" ]] || die "$S is not a folder"
    local owner mode
    owner="$(stat -c %u "$S")"
    [[ "$owner" == "$EUID" ]] || die "$S belongs to uid $owner, not to you ($EUID): refusing to use it (pass another STATE_DIR)"
    mode="$(stat -c %a "$S")"
    (( (8#$mode & 8#022) == 0 )) || die "$S can be written by others (mode $mode): refusing to use it (pass another STATE_DIR)"
    chmod 700 "$S"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out waiting for $what (logs: $S/log)"
        sleep 0.2
    done
}

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]} (once, ~25 s)"
    # Debian's postinst scripts try to start the services through invoke-rc.d; the 'denied' lines are harmless.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$S/log/apt.log" 2>&1 \
        || die "apt-get install failed, see $S/log/apt.log"
}

write_config() {
    mkdir -p "$S"/{etc,log,run,state,spool,dev,munge,mysql} "$S"/spool/node{1,2}  # slurmd wants its spool at start
    chmod 700 "$S/munge"
    # Fake GPUs: Slurm only stats the device files, it never opens them; mknod gives char devices like /dev/null.
    for i in 0 1; do [[ -c "$S/dev/nvidia$i" ]] || mknod "$S/dev/nvidia$i" c 1 3; done
    local munge_sock="$S/munge/munge.socket"
    cat >"$S/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_sock,cred_expire=10
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# A requeued job becomes eligible after cred_expire; only the periodic scheduler starts it (default every 60 s).
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
# Slurm's own defaults wait 30-120 s at several steps; a test cluster should not.
KillWait=5
MinJobAge=30
MessageTimeout=10
InactiveLimit=0
SlurmdTimeout=60
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Slurm reads the munge socket for slurmdbd from here, not from AuthInfo.
AccountingStoragePass=$munge_sock
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=node1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$NODE1_PORT CPUs=8 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
NodeName=node2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$NODE2_PORT CPUs=8 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=60 State=UP
PartitionName=gpu Nodes=node1,node2 MaxTime=60 State=UP
EOF
    cat >"$S/etc/gres.conf" <<EOF
NodeName=node[1-2] Name=gpu File=$S/dev/nvidia[0-1]
EOF
    cat >"$S/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$munge_sock
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$S/run/slurmdbd.pid
LogFile=$S/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$S/etc/slurmdbd.conf"   # slurmdbd refuses a config readable by others
    cat >"$S/etc/env.sh" <<EOF
export SLURM_CONF=$S/etc/slurm.conf
EOF
}

start_munge() {
    pid_alive "$S/run/munged.pid" && return 0
    [[ -f "$S/munge/munge.key" ]] || { dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$S/munge/munge.key"; }
    munged --force --key-file="$S/munge/munge.key" --socket="$S/munge/munge.socket" \
        --pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed"
    wait_for 10 munged test -S "$S/munge/munge.socket"
}

mysql_cli() { mariadb --protocol=socket --socket="$S/mysql/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    pid_alive "$S/run/mysqld.pid" && return 0
    if [[ ! -d "$S/mysql/data/mysql" ]]; then
        mkdir -p "$S/mysql/data"
        mariadb-install-db --no-defaults --user=root --datadir="$S/mysql/data" --auth-root-authentication-method=socket \
            --skip-test-db >"$S/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed, see $S/log/mariadb-install.log"
    fi
    # --no-defaults: ignore /etc/mysql; loopback TCP for slurmdbd, a private socket for this script.
    mariadbd --no-defaults --user=root --datadir="$S/mysql/data" --socket="$S/mysql/mysqld.sock" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$S/run/mysqld.pid" --log-error="$S/log/mysqld.log" \
        --innodb-buffer-pool-size=32M --skip-name-resolve >/dev/null 2>&1 &
    wait_for 60 mariadb mysql_cli -e "SELECT 1"
    mysql_cli -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
                  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_slurm() {
    export SLURM_CONF="$S/etc/slurm.conf"
    pid_alive "$S/run/slurmdbd.pid" || slurmdbd
    wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT"
    # slurmctld registers the cluster in the accounting database itself; -c starts from an empty job state.
    pid_alive "$S/run/slurmctld.pid" || slurmctld -c
    wait_for 30 slurmctld scontrol ping
    for n in node1 node2; do pid_alive "$S/run/slurmd-$n.pid" || slurmd -N "$n"; done
    wait_for 60 "both nodes idle" bash -c '[[ "$(sinfo -h -p debug -N -o "%N %t" | grep -c " idle$")" == 2 ]]'
    wait_for 60 "sacct" bash -c 'sacct -n -X -S now-1hour >/dev/null'
}

all_alive() {
    local f
    for f in "${DAEMONS[@]}"; do pid_alive "$S/run/$f.pid" || return 1; done
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "must run as root (it starts munged, slurmd and MariaDB)"
    private_state_dir
    mkdir -p "$S/log"
    if all_alive && SLURM_CONF="$S/etc/slurm.conf" scontrol ping >/dev/null 2>&1; then
        log "already running"
    else
        install_packages
        cmd_stop quiet
        # A fresh cluster every start: old job records with reused job ids would confuse sacct and submitit.
        rm -rf "$S/state" "$S/spool" "$S/mysql" "$S/run"
        write_config
        start_munge
        start_mariadb
        start_slurm
        log "ready: 2 nodes (node1, node2), 8 CPUs and 2 fake GPUs each, partitions debug (default) and gpu"
    fi
    echo "export SLURM_CONF=$S/etc/slurm.conf"
}

cmd_stop() {  # TERM every daemon that has a pid file here, KILL what is left after 15 s
    local f pids=()
    for f in "${DAEMONS[@]}"; do
        if pid_alive "$S/run/$f.pid"; then
            pids+=("$(cat "$S/run/$f.pid")")
            kill "${pids[-1]}" 2>/dev/null || true
        fi
    done
    for _ in $(seq 75); do
        local left=0 p
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
        ((left)) || break
        sleep 0.2
    done
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null; done
    for f in "${DAEMONS[@]}"; do rm -f "$S/run/$f.pid"; done
    [[ "${1:-}" == quiet ]] || log "stopped"
}

cmd_status() {
    local f rc=0
    for f in "${DAEMONS[@]}"; do
        if pid_alive "$S/run/$f.pid"; then echo "$f: running (pid $(cat "$S/run/$f.pid"))"; else echo "$f: stopped"; rc=1; fi
    done
    if ((rc == 0)); then SLURM_CONF="$S/etc/slurm.conf" sinfo -N -o "%N %P %t %c %G" || rc=1; fi
    return $rc
}

case "$CMD" in
    start | stop | status) [[ -e "$S" || -L "$S" ]] && private_state_dir ;;
esac
case "$CMD" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
