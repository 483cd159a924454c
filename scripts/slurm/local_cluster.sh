#!/usr/bin/env bash
# A real single-host SLURM cluster on this machine, for the `slurm` tests and for trying the SLURM
# launcher without a cluster: munge, MariaDB + slurmdbd (accounting, so `sacct` works), slurmctld
# and slurmd, one node (`localhost`: every core, ~85% of the memory) in one partition (`debug`).
#
#   scripts/slurm/local_cluster.sh start    # install packages if missing (apt-get, as root), start; idempotent
#   scripts/slurm/local_cluster.sh status   # each daemon's pid and sinfo; exit 0 only when all run
#   scripts/slurm/local_cluster.sh stop     # cancel jobs, stop every daemon by its pid file, remove the state
#
# Needs root on Debian/Ubuntu and no systemd. Everything it writes lives under $LOCAL_SLURM_DIR
# (default /var/tmp/local-slurm), except /etc/slurm/slurm.conf, a symlink into it so that sbatch,
# sinfo, ... find the cluster with no environment variable (stop removes it; start refuses to
# replace a slurm.conf it did not write). A munged that already answers is used and left running.
# LOCAL_SLURM_ACCOUNTING=0 starts it without MariaDB/slurmdbd (sacct then fails, as on some clusters).
# Fast restarts: a requeued job starts again after ~10 s, not 120 s.
set -euo pipefail

STATE=${LOCAL_SLURM_DIR:-/var/tmp/local-slurm}
CLUSTER=${LOCAL_SLURM_CLUSTER:-local}
DB_PORT=${LOCAL_SLURM_DB_PORT:-3307} # not 3306: leave a system MariaDB alone
ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-1} # 0: no MariaDB/slurmdbd (sacct fails, as on some clusters)
CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819
SLURM_CONF_LINK=/etc/slurm/slurm.conf
LOCK=${LOCAL_SLURM_LOCK:-/var/lock/local-slurm.lock}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged) # stop order
export SLURM_CONF=$STATE/etc/slurm.conf              # slurmdbd finds slurmdbd.conf beside it

log() { echo "local_cluster: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
pidfile() { echo "$STATE/run/$1.pid"; }
pid_of() { # the pid in a daemon's pid file, if that process is alive and is that daemon
    local f pid
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(tr -dc 0-9 <"$f")
    # a stale pid file may name a pid now reused by another program: never signal that one
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
}
wait_for() { # wait_for SECONDS WHAT COMMAND...: poll every 0.1 s
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# ---- packages --------------------------------------------------------------------------------
install_packages() {
    local missing=()
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null ||
        missing+=(slurm-wlm)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || [[ -x /usr/sbin/munged ]] || missing+=(munge)
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
    ((${#missing[@]})) || return 0
    ((EUID == 0)) || die "packages ${missing[*]} are missing and only root can install them (run as root, or install them)"
    command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and there is no apt-get (Debian/Ubuntu only): install ${PACKAGES[*]}"
    log "installing ${missing[*]} (apt-get)"
    local apt=(apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}")
    # no package lists yet (a fresh container): update once, then install
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"/tmp/local-slurm-apt.log" 2>&1; then
        apt-get update -q >>"/tmp/local-slurm-apt.log" 2>&1 || die "apt-get update failed (see /tmp/local-slurm-apt.log)"
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"/tmp/local-slurm-apt.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed (see /tmp/local-slurm-apt.log)"
    fi
}

# ---- munge -----------------------------------------------------------------------------------
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
start_munge() {
    if munge_ok; then return 0; fi # a munged that works (the system's, or ours from before)
    local munged
    munged=$(command -v munged || echo /usr/sbin/munged)
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    chmod 755 /run/munge # clients must reach the socket
    # munged refuses to run as root ("Logfile is insecure"): run it as its own user
    runuser -u munge -- "$munged" --pid-file=/run/munge/munged.pid 9>&- ||
        die "munged did not start (see /var/log/munge/munged.log)"
    wait_for 10 munge munge_ok || die "munge does not answer (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$(pidfile munged)" # ours: stop ends it
}

# ---- MariaDB + slurmdbd ----------------------------------------------------------------------
mysql_sock() { echo "$STATE/run/mysqld.sock"; }
start_mariadb() {
    local mariadbd install_db client
    mariadbd=$(command -v mariadbd || command -v mysqld)
    install_db=$(command -v mariadb-install-db || command -v mysql_install_db)
    client=$(command -v mariadb || command -v mysql)
    if [[ ! -d $STATE/mysql/mysql ]]; then
        "$install_db" --no-defaults --datadir="$STATE/mysql" --user=root --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
    fi
    setsid "$mariadbd" --no-defaults --datadir="$STATE/mysql" --user=root \
        --socket="$(mysql_sock)" --pid-file="$(pidfile mariadbd)" --log-error="$STATE/log/mariadb.log" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
        --innodb-buffer-pool-size=16M --innodb-log-file-size=8M --performance-schema=OFF \
        </dev/null >/dev/null 2>&1 9>&- &
    wait_for 30 "MariaDB" "$client" --no-defaults --socket="$(mysql_sock)" -e "SELECT 1" ||
        die "MariaDB did not start on 127.0.0.1:$DB_PORT (see $STATE/log/mariadb.log)"
    "$client" --no-defaults --socket="$(mysql_sock)" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
        die "could not create the accounting database user"
}

start_slurmdbd() {
    slurmdbd 9>&- || die "slurmdbd did not start (see $STATE/log/slurmdbd.log)"
    wait_for 30 "slurmdbd" sacctmgr -n list cluster ||
        die "slurmdbd does not answer (see $STATE/log/slurmdbd.log)"
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
    fi
}

# ---- configuration ---------------------------------------------------------------------------
write_configs() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
    cat >"$STATE/etc/slurm.conf" <<EOF
# written by scripts/slurm/local_cluster.sh: a single-host cluster, state in $STATE
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
# a requeued job waits cred_expire before it may start again (default 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
$(((ACCOUNTING)) && printf '%s\n' AccountingStorageType=accounting_storage/slurmdbd \
        AccountingStorageHost=localhost "AccountingStoragePort=$DBD_PORT")
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
InactiveLimit=0
MailProg=/bin/true
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    (
        umask 077
        cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    )
}

link_conf() {
    mkdir -p "$(dirname "$SLURM_CONF_LINK")"
    if [[ -e $SLURM_CONF_LINK || -L $SLURM_CONF_LINK ]]; then
        [[ -L $SLURM_CONF_LINK && $(readlink "$SLURM_CONF_LINK") == "$SLURM_CONF" ]] && return 0
        [[ -L $SLURM_CONF_LINK && ! -e $SLURM_CONF_LINK ]] ||
            die "$SLURM_CONF_LINK exists and is not this script's: a real cluster is configured here (not replacing it)"
    fi
    ln -sfn "$SLURM_CONF" "$SLURM_CONF_LINK"
}

# ---- the commands ----------------------------------------------------------------------------
all_running() {
    local d
    for d in slurmd slurmctld $( ((ACCOUNTING)) && echo slurmdbd mariadbd); do
        pid_of "$d" >/dev/null || return 1
    done
    munge_ok && sinfo -h >/dev/null 2>&1
}

node_idle() { [[ $(sinfo -h -n localhost -o %t 2>/dev/null) == idle* ]]; }

start() {
    ((EUID == 0)) || die "start needs root (it runs the SLURM daemons as root)"
    install_packages
    if all_running; then
        log "already running ($STATE)"
        return 0
    fi
    [[ -d $STATE ]] && stop_cluster # a half-started or crashed cluster: start clean
    local port
    for port in $CTLD_PORT $SLURMD_PORT $DBD_PORT $DB_PORT; do
        ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
            die "port $port is in use by another program: is another SLURM or database running? (ss -ltnp)"
    done
    mkdir -p "$STATE"/{etc,run,log,spool/slurmctld,spool/slurmd}
    DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
    write_configs
    link_conf
    start_munge
    if ((ACCOUNTING)); then
        start_mariadb
        start_slurmdbd
    fi
    slurmctld 9>&- || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
    slurmd -N localhost 9>&- || die "slurmd did not start (see $STATE/log/slurmd.log)"
    wait_for 30 "node" node_idle ||
        die "node localhost is not idle: $(sinfo -h -N -o '%N %t %E' 2>&1) (see $STATE/log/)"
    log "running: partition debug, $(nproc) CPUs, accounting $( ((ACCOUNTING)) && echo on || echo off); state and logs in $STATE"
}

stop_pids() { # SIGTERM all at once (each takes ~2 s to exit), wait up to 15 s, then SIGKILL
    (($#)) || return 0
    local deadline=$((SECONDS + 15)) pid alive
    kill "$@" 2>/dev/null || true
    while :; do
        alive=()
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || return 0
        if ((SECONDS >= deadline)); then
            log "still running after 15 s, killing: ${alive[*]}"
            kill -9 "${alive[@]}" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
}

stop_cluster() {
    # jobs first: their processes (under slurmstepd) outlive slurmd
    if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null; then
        local jobs
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null || true
            wait_for 10 "jobs to end" bash -c '[[ -z $(squeue -h -t R,CG -o %A 2>/dev/null) ]]' || true
            local pids
            pids=$(timeout 10 scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}' || true)
            # shellcheck disable=SC2086
            [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
        fi
    fi
    local d pids=()
    for d in "${DAEMONS[@]}"; do pids+=($(pid_of "$d" || true)); done
    stop_pids "${pids[@]}"
    if [[ -L $SLURM_CONF_LINK && $(readlink "$SLURM_CONF_LINK") == "$SLURM_CONF" ]]; then
        rm -f "$SLURM_CONF_LINK"
    fi
    rm -rf "$STATE"
}

stop() {
    if [[ ! -d $STATE ]]; then
        log "not running (no $STATE)"
        return 0
    fi
    stop_cluster
    log "stopped; removed $STATE"
}

status() {
    local d pid rc=0
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if [[ $d == mariadbd || $d == slurmdbd ]] && [[ -f $STATE/etc/slurm.conf ]] &&
            ! grep -q '^AccountingStorageType' "$STATE/etc/slurm.conf"; then
            echo "$d: not used (accounting off)"
            continue
        fi
        if pid=$(pid_of "$d"); then
            echo "$d: running (pid $pid)"
        elif [[ $d == munged ]] && munge_ok; then
            echo "munged: running (not started by this script)"
        else
            echo "$d: not running"
            rc=1
        fi
    done
    if ((rc == 0)); then
        sinfo -o "%P %a %D %c %m %t %N" || rc=1
    fi
    return $rc
}

case ${1:-} in
start | stop)
    # one start/stop at a time (the daemons are started with this descriptor closed)
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock -w 120 9 || die "another local_cluster.sh holds $LOCK"
    "$1"
    ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
