#!/usr/bin/env bash
# Install (if missing) and start a single-node SLURM on this machine: munged, slurmctld, slurmd.
#
#   bash scripts/slurm/start.sh        # as root, on Debian / Ubuntu
#
# Safe to run again: what is installed is not reinstalled, what runs is not restarted (unless
# the configuration for this host changed). It waits until `sinfo` shows the node ready.
#
# Exit status: 0 ready; 1 failed (the reason on stderr, with the logs' tails);
# 77 this machine cannot run it (not root, no apt-get, the packages not in its registry).
#
# Environment: DASKSVM_SLURM_TIMEOUT  seconds to wait for the node (default 60).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by dasksvm scripts/slurm/start.sh"
STATE=/run/dasksvm-slurm            # one file per daemon that this script started
LOGS=/var/log/slurm
TIMEOUT=${DASKSVM_SLURM_TIMEOUT:-60}

say() { echo "start.sh: $*"; }
die() { echo "start.sh: error: $*" >&2; exit 1; }
cannot() { echo "start.sh: cannot run on this machine: $*" >&2; exit 77; }

[ "$(id -u)" -eq 0 ] || cannot "needs root (it installs packages and starts the SLURM daemons)"

# --- packages --------------------------------------------------------------------------------
missing=0
for cmd in munged munge unmunge slurmctld slurmd sinfo sbatch squeue scancel; do
    command -v "$cmd" >/dev/null 2>&1 || missing=1
done
if [ "$missing" -eq 1 ]; then
    command -v apt-get >/dev/null 2>&1 || cannot "SLURM is not installed and there is no apt-get"
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt=(apt-get -o DPkg::Lock::Timeout=600)   # another install may hold dpkg's lock: wait
    "${apt[@]}" update -qq || cannot "apt-get update failed: the package registry is unreachable"
    for pkg in slurm-wlm munge; do
        cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
        if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
            cannot "the package registry has no $pkg"
        fi
    done
    "${apt[@]}" install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
fi

# --- munge -----------------------------------------------------------------------------------
mkdir -p "$STATE" /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    munged --force
    touch "$STATE/munged"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged does not answer (munge -n | unmunge)"
fi

# --- slurm.conf for this host ----------------------------------------------------------------
HOST=$(hostname -s)
NCPU=$(nproc --all)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$(( MEM_MB * 9 / 10 ))        # below the machine's, or slurmd marks the node invalid

new_conf=$(cat <<CONF_END
$MARKER for $HOST
ClusterName=dasksvm
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$HOST CPUs=$NCPU RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF_END
)

changed=0
if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    if sinfo -h >/dev/null 2>&1; then
        say "a SLURM not configured by this script is running; using it as it is"
        exit 0
    fi
    die "$CONF exists and was not written by this script; move it away to let it write one"
fi
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    mkdir -p /etc/slurm
    printf '%s\n' "$new_conf" > "$CONF"
    changed=1
    say "wrote $CONF (node $HOST: CPUs=$NCPU RealMemory=${REAL_MB}MB, partition debug)"
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd "$LOGS"

# --- daemons ---------------------------------------------------------------------------------
running() { pgrep -x "$1" >/dev/null 2>&1; }
stop_daemon() {  # name: stop it (a changed configuration), waiting for it to exit
    local pid
    for pid in $(pgrep -x "$1"); do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do running "$1" || return 0; sleep 0.1; done
    die "$1 did not stop"
}
if [ "$changed" -eq 1 ]; then
    for d in slurmd slurmctld; do
        if running "$d"; then say "restarting $d (new configuration)"; stop_daemon "$d"; fi
    done
fi
for d in slurmctld slurmd; do
    if ! running "$d"; then
        say "starting $d"
        "$d" || die "$d failed to start; see $LOGS/$d.log"
        touch "$STATE/$d"
    fi
done

# --- wait for the node -----------------------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
state=""
while :; do
    state=$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        {
            echo "start.sh: error: node $HOST not ready after ${TIMEOUT}s (sinfo state: '${state:-no answer}')"
            sinfo -R 2>&1 || true
            for d in slurmctld slurmd; do
                echo "--- $LOGS/$d.log (last lines)"
                tail -n 15 "$LOGS/$d.log" 2>/dev/null || true
            done
        } >&2
        exit 1
    fi
    case "$state" in  # a node left down by an earlier run comes back
        down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
say "SLURM ready: node $HOST $state, partition debug"
