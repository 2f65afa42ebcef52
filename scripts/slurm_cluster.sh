#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for `make test-cluster` (as root; Debian's slurmctld/slurmd/munge).
#
#   scripts/slurm_cluster.sh start    install (apt) if missing, write the config, start munged/slurmctld/slurmd
#   scripts/slurm_cluster.sh stop     stop the daemons this script started (by PID), nothing else
#   scripts/slurm_cluster.sh status   sinfo of the cluster
#
# Everything lives in $SLURM_CLUSTER_DIR (default /tmp/imprint-slurm): slurm.conf, spool, logs, PID files. Clients
# find the cluster through SLURM_CONF=$SLURM_CLUSTER_DIR/slurm.conf (the Makefile exports it), so a system-wide
# /etc/slurm is neither read nor changed. Any failure exits non-zero with the daemon logs' last lines: never a
# quiet skip.
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/tmp/imprint-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
NODE=$(hostname -s)
MUNGE_SOCKET=$DIR/munge/munge.socket

die() {
  echo "slurm_cluster: $*" >&2
  for f in "$DIR"/munged.log "$DIR"/slurmctld.log "$DIR"/slurmd.log; do
    [ -f "$f" ] && { echo "--- last lines of $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "slurmctld, slurmd and munge are missing, and installing them needs root (apt-get)"
  command -v apt-get >/dev/null || die "slurmctld, slurmd and munge are missing and there is no apt-get"
  echo "installing slurmctld slurmd slurm-client munge (apt) ..."
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null \
    || die "apt-get install slurmctld slurmd slurm-client munge failed"
}

write_config() {
  mkdir -p "$DIR"/spool/ctld "$DIR"/spool/d "$DIR"/munge
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$CONF" <<EOF
# written by scripts/slurm_cluster.sh: this host is the controller and the only node
ClusterName=imprint
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
SchedulerParameters=sched_interval=2
MinJobAge=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

running() {
  scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o "%T" 2>/dev/null | grep -qE "idle|mixed|alloc"
}

start() {
  install
  if [ -f "$CONF" ] && running; then
    echo "slurm cluster already running ($CONF)"
    return
  fi
  stop >/dev/null 2>&1 || true
  write_config
  munged --force --socket="$MUNGE_SOCKET" --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" \
    --seed-file="$DIR/munge/seed" || die "munged did not start"
  slurmctld -f "$CONF" -i || die "slurmctld did not start"
  slurmd -f "$CONF" || die "slurmd did not start"
  for _ in $(seq 60); do
    if running; then
      echo "slurm cluster up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T')  (SLURM_CONF=$CONF)"
      return
    fi
    sleep 1
  done
  die "the cluster did not come up within 60 s (scontrol ping / sinfo)"
}

stop() {
  local pidfile pid
  for name in slurmd slurmctld munged; do
    pidfile=$DIR/$name.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
