#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the Slurm tests (needs root).
#   tests/slurm/cluster.sh start   install slurm-wlm + munge if missing, configure, start, wait idle
#   tests/slurm/cluster.sh stop    stop the daemons
# The node advertises two fake GPUs (gres backed by /dev/null and /dev/zero) so GPU jobs are scheduled, the
# preset's 2-GPU generation jobs included; the
# generation jobs then run vLLM's CPU build inside them. Accounting is off, so Snakemake's
# Slurm plugin must poll with squeue (profiles/slurm sets that), and MinJobAge keeps finished
# jobs visible to squeue long enough.
set -euo pipefail
cmd=${1:-start}
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged

    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=cosmoforge
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
ReturnToService=2
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=${host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${host} MaxTime=INFINITE State=UP
CONF
    cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=${host} Name=gpu File=/dev/null
NodeName=${host} Name=gpu File=/dev/zero
CONF
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
        case "$state" in
            idle*|mixed*|allocated*) echo "slurm: node ${host} ${state}"; return 0 ;;
            drain*|down*) scontrol update nodename="${host}" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    echo "slurm: node did not become idle; see /var/log/slurm/" >&2
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    return 1
}

stop() {
    scancel --user=root 2>/dev/null || true
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    echo "slurm: stopped"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
