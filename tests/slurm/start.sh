#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on localhost (munged, slurmctld, slurmd), for
# tests/test_slurm.py. Idempotent: daemons that already run from this state dir are left alone.
#
#   tests/slurm/start.sh           install SLURM when missing, start what is not running, wait
#                                  until a real `srun` works, print the SLURM_CONF to export
#   tests/slurm/start.sh --check   exit 0 if the cluster runs and accepts jobs, 1 if not
#
# Everything (configuration, keys, state, logs, pid files) lives in the state dir, except a
# symlink /etc/slurm/slurm.conf -> the state dir's slurm.conf (see below; stop.sh removes it).
# Needs root (apt-get, daemons run as SlurmUser=root).
#
# Environment:
#   CNNPIPE_SLURM_DIR         state dir (default /tmp/cnnpipe-slurm)
#   CNNPIPE_SLURM_PARTITIONS  partition names, the first is the default ("cpu gpu", the names
#                             profiles/slurm/config.yaml uses)
#   CNNPIPE_SLURM_PORTS       slurmctld and slurmd ports (default "6817 6818")
set -euo pipefail

STATE=${CNNPIPE_SLURM_DIR:-/tmp/cnnpipe-slurm}
read -r -a PARTITIONS <<<"${CNNPIPE_SLURM_PARTITIONS:-cpu gpu}"
read -r CTLD_PORT SLURMD_PORT <<<"${CNNPIPE_SLURM_PORTS:-6817 6818}"
CONF=$STATE/etc/slurm.conf
MUNGE_DIR=$STATE/munge
SOCKET=$MUNGE_DIR/munge.socket
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF=$CONF

log() { echo "slurm/start: $*" >&2; }

# A pid file's process, if it still runs and is the named program (a reused pid is not ours).
running() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$name" ]]
}

# One short real job: the only proof that controller, node daemon and munge all work together.
accepts_jobs() {
    [[ -r $CONF ]] && timeout 20 srun --quiet -N1 -t 1 true >/dev/null 2>&1
}

all_running() {
    running "$MUNGE_DIR/munged.pid" munged &&
        running "$STATE/run/slurmctld.pid" slurmctld &&
        running "$STATE/run/slurmd.pid" slurmd
}

# Commands find their configuration through SLURM_CONF, but the SLURM executor's job step
# (snakemake-executor-plugin-slurm-jobstep) drops SLURM_* variables before its nested `srun`,
# which then reads the compiled-in path: point that path at this cluster's file, unless a
# real configuration is there.
linked() { [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; }
link_system_conf() {
    linked && return 0
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        log "$SYSTEM_CONF exists and is not ours; not starting a test cluster beside another one"
        exit 1
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
}

if [[ ${1:-} == --check ]]; then
    all_running && linked && command -v srun >/dev/null && accepts_jobs
    exit
fi

if [[ $(id -u) != 0 ]]; then
    log "needs root (it installs packages and runs the daemons as SlurmUser=root)"
    exit 1
fi

if all_running && linked && accepts_jobs; then
    log "already running (state in $STATE)"
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

if ((${#SOCKET} > 100)); then
    log "state dir path too long for a unix socket: $STATE"
    exit 1
fi

link_system_conf

# Debian's packages; their services are not started (there is no systemd here).
if ! command -v munged >/dev/null || ! command -v slurmctld >/dev/null ||
    ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null; then
    log "installing munge and SLURM with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null
fi

mkdir -p "$STATE"/{etc,ctld,spool,log,run} "$MUNGE_DIR"
chmod 0755 "$STATE"
# munged insists on owning its directory and on a key only it can read.
chown munge:munge "$MUNGE_DIR"
chmod 0755 "$MUNGE_DIR"

if ! running "$MUNGE_DIR/munged.pid" munged; then
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        runuser -u munge -- mungekey --create --keyfile="$MUNGE_DIR/munge.key"
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
    rm -f "$SOCKET" "$SOCKET.lock"
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --socket="$SOCKET" \
        --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_DIR/munged.pid" \
        --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
fi
for _ in $(seq 50); do
    munge --socket="$SOCKET" -n 2>/dev/null | unmunge --socket="$SOCKET" >/dev/null 2>&1 && break
    sleep 0.2
done
if ! munge --socket="$SOCKET" -n | unmunge --socket="$SOCKET" >/dev/null; then
    log "munged does not answer; see $MUNGE_DIR/munged.log"
    exit 1
fi

# The configuration is rewritten only while neither SLURM daemon runs, so a running
# cluster never sees its configuration change underneath it.
if ! running "$STATE/run/slurmctld.pid" slurmctld && ! running "$STATE/run/slurmd.pid" slurmd; then
    node=$(hostname -s)
    cpus=$(nproc)
    # RealMemory must not exceed what slurmd finds, or the node is drained: take 90%.
    memory=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    {
        echo "# Generated by tests/slurm/start.sh; rewritten on the next fresh start."
        echo "ClusterName=cnnpipe"
        echo "SlurmctldHost=$node(127.0.0.1)"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "SlurmdPort=$SLURMD_PORT"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$SOCKET"
        echo "StateSaveLocation=$STATE/ctld"
        echo "SlurmdSpoolDir=$STATE/spool"
        echo "SlurmctldPidFile=$STATE/run/slurmctld.pid"
        echo "SlurmdPidFile=$STATE/run/slurmd.pid"
        echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
        echo "SlurmdLogFile=$STATE/log/slurmd.log"
        # No cgroups without systemd: track processes by parentage, bind nothing.
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "MpiDefault=none"
        echo "MailProg=/bin/true"
        echo "SchedulerType=sched/backfill"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory"
        # No accounting daemon (so no sacct history): finished jobs stay visible to squeue
        # and scontrol for MinJobAge seconds, and every finished job gets a line in a text log.
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/filetxt"
        echo "JobCompLoc=$STATE/log/jobcomp.log"
        # An hour: the tests read finished jobs back after the whole run, which on two busy
        # cores can take longer than the default 300 s.
        echo "MinJobAge=3600"
        # A node that was down (say, after a restart) comes back when its slurmd registers.
        echo "ReturnToService=2"
        echo "NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN"
        default=YES
        for partition in "${PARTITIONS[@]}"; do
            # Without DefMemPerCPU a job that asks for no memory would take the whole node.
            echo "PartitionName=$partition Nodes=$node Default=$default MaxTime=INFINITE" \
                "State=UP DefMemPerCPU=1000"
            default=NO
        done
    } >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
fi

if ! running "$STATE/run/slurmctld.pid" slurmctld; then
    log "starting slurmctld"
    slurmctld -f "$CONF"
fi
if ! running "$STATE/run/slurmd.pid" slurmd; then
    log "starting slurmd"
    slurmd -f "$CONF" -N "$(hostname -s)"
fi

log "waiting for a test job to run"
deadline=$((SECONDS + 90))
until accepts_jobs; do
    if ((SECONDS > deadline)); then
        log "no job ran within 90 s; logs in $STATE/log"
        sinfo -N -l >&2 || true
        tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 1
done
log "ready (state in $STATE)"
echo "export SLURM_CONF=$CONF"
