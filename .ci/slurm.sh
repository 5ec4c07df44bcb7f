#!/usr/bin/env bash
# A one-node SLURM on localhost, as root, for tests/test_slurm.py (and by hand):
#   .ci/slurm.sh install        Debian's slurmctld slurmd slurm-client munge (about 10 s)
#   .ci/slurm.sh start DIR      config, state, spool, logs and pid files in DIR; waits until idle
#   .ci/slurm.sh stop DIR       cancels the jobs left, stops each daemon it started by its PID
# The node is named after `hostname -s` and declares one fake A100 (gres File=/dev/null), so
# GPU scheduling is real though no GPU exists. Facts behind each line: ../shared/notes/stack-facts.md.
set -euo pipefail

CONF=/etc/slurm/slurm.conf  # must be here: a custom SLURM_CONF is dropped inside job steps
GRES=/etc/slurm/gres.conf   # read from slurm.conf's directory

die() { echo "slurm.sh: $*" >&2; exit 1; }
skip() { echo "slurm.sh: cannot run here: $*" >&2; exit 77; }  # 77: the test skips

install_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
}

write_config() {
    local dir=$1 host hw
    host=$(hostname -s)
    # This machine's CPUs/sockets/memory as slurmd detects them, less its name and uptime.
    hw=$(slurmd -C | head -1 | tr ' ' '\n' | grep -v '^NodeName=' | tr '\n' ' ')
    mkdir -p "$dir"/{state,spool,log}
    cat >"$dir/slurm.conf" <<EOF
ClusterName=llamabench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# squeue polling (slurm-status-command: squeue) needs finished jobs listed for a while.
MinJobAge=300
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 $hw Gres=gpu:a100:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # Without File= the GPU is dropped and the node drains.
    echo "NodeName=$host Name=gpu Type=a100 File=/dev/null" >"$dir/gres.conf"
    mkdir -p /etc/slurm
    for f in "$CONF" "$GRES"; do
        if [[ -e $f || -L $f ]] && [[ $(readlink "$f" || true) != "$dir/"* ]]; then
            # A leftover of an earlier run of this script points into its (gone) temp dir.
            [[ -L $f && ! -e $f ]] || skip "$f exists and is not this run's; not overwriting another SLURM config"
        fi
        ln -sfn "$dir/$(basename "$f")" "$f"
    done
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    local dir=$1 state
    [[ $(id -u) == 0 ]] || skip "not root (the daemons run as root)"
    install_slurm || skip "could not install slurmctld slurmd slurm-client munge with apt-get"
    write_config "$dir"
    if ! alive /run/munge/munged.pid; then
        install -d -o munge -g munge /run/munge
        runuser -u munge -- /usr/sbin/munged
        cp /run/munge/munged.pid "$dir/munged.pid"  # ours to stop; a munged found running is not
    fi
    slurmctld -c  # -c: no state from an earlier cluster
    slurmd
    for _ in $(seq 120); do
        state=$(sinfo -h -o %t 2>/dev/null || true)
        [[ $state == idle ]] && return 0
        sleep 0.5
    done
    sinfo -R >&2 || true
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    die "the node is '$state', not idle, after 60 s (logs in $dir/log)"
}

stop_pid() {
    local pidfile=$1 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    local dir=$1 f
    # Jobs still running (a failed test) would outlive slurmd in their slurmstepd.
    scancel --user "$(id -un)" 2>/dev/null && sleep 1 || true
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    stop_pid "$dir/munged.pid"
    for f in "$CONF" "$GRES"; do
        [[ $(readlink "$f" || true) == "$dir/"* ]] && rm -f "$f"
    done
    return 0
}

case "${1:-}" in
    install) install_slurm ;;
    start) start "$(realpath -m "${2:?usage: slurm.sh start DIR}")" ;;
    stop) stop "$(realpath -m "${2:?usage: slurm.sh stop DIR}")" ;;
    *) die "usage: slurm.sh install | start DIR | stop DIR" ;;
esac
