#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tests/slurm/start.sh started: cancel its jobs, then
# stop slurmd, slurmctld and munged by the pids in the state dir, and remove the
# /etc/slurm/slurm.conf symlink start.sh made. Only processes recorded there (and still
# running the expected program) are signalled. Idempotent: nothing running is fine.
#
#   tests/slurm/stop.sh           stop the daemons, keep the state dir (logs, key, config)
#   tests/slurm/stop.sh --purge   also delete the state dir
#
# Environment: CNNPIPE_SLURM_DIR, the state dir (default /tmp/cnnpipe-slurm).
set -euo pipefail

STATE=${CNNPIPE_SLURM_DIR:-/tmp/cnnpipe-slurm}
CONF=$STATE/etc/slurm.conf
export SLURM_CONF=$CONF

log() { echo "slurm/stop: $*" >&2; }

pid_of() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$name" ]] &&
        echo "$pid"
}

stop() {
    local pidfile=$1 name=$2 pid
    if ! pid=$(pid_of "$pidfile" "$name"); then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name ($pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# Jobs first, while the controller still runs, so no job step outlives its slurmd.
active() {
    timeout 10 squeue --noheader --format=%i --states=PENDING,RUNNING,CONFIGURING,COMPLETING \
        2>/dev/null
}
if pid_of "$STATE/run/slurmctld.pid" slurmctld >/dev/null && command -v squeue >/dev/null; then
    jobs=$(active || true)
    if [[ -n $jobs ]]; then
        log "cancelling jobs still queued or running: ${jobs//$'\n'/ }"
        # shellcheck disable=SC2086 # one argument per job id
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z $(active || true) ]] && break
            sleep 0.5
        done
    fi
fi

stop "$STATE/run/slurmd.pid" slurmd
stop "$STATE/run/slurmctld.pid" slurmctld
stop "$STATE/munge/munged.pid" munged

# The symlink start.sh made, and only if it still points at this state dir.
if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$CONF" ]]; then
    rm -f /etc/slurm/slurm.conf
fi

if [[ ${1:-} == --purge ]]; then
    log "removing $STATE"
    rm -rf "$STATE"
fi
log "stopped"
