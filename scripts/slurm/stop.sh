#!/usr/bin/env bash
# Stop what scripts/slurm/start.sh started (slurmd, slurmctld, munged), cancelling the jobs
# still queued or running first. Daemons that were already running before start.sh are left
# alone. Safe to run again; the packages stay installed.
set -euo pipefail

STATE=/run/dasksvm-slurm

say() { echo "stop.sh: $*"; }

if [ ! -d "$STATE" ] || [ -z "$(ls -A "$STATE" 2>/dev/null)" ]; then
    say "nothing started by start.sh to stop"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "stop.sh: error: needs root" >&2; exit 1; }

if [ -e "$STATE/slurmctld" ]; then
    jobs=$(squeue -h -o '%i' 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        say "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 50); do
            [ -z "$(squeue -h -o '%i' 2>/dev/null || true)" ] && break
            sleep 0.2
        done
    fi
fi

for d in slurmd slurmctld munged; do
    [ -e "$STATE/$d" ] || continue
    pids=$(pgrep -x "$d" || true)
    if [ -n "$pids" ]; then
        say "stopping $d"
        # shellcheck disable=SC2086
        kill $pids 2>/dev/null || true
        for _ in $(seq 100); do
            pgrep -x "$d" >/dev/null || break
            sleep 0.1
        done
        if pgrep -x "$d" >/dev/null; then
            echo "stop.sh: error: $d did not stop" >&2
            exit 1
        fi
    fi
    rm -f "$STATE/$d"
done
rmdir "$STATE" 2>/dev/null || true
say "stopped"
