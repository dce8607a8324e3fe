#!/usr/bin/env bash
# One SLURM task per node runs this: torchrun with c10d rendezvous on the job's first node.
#
# Preemption: SLURM sends SIGUSR1 (sbatch --signal=USR1@SECONDS) or SIGTERM to this task. We pass
# SIGUSR1 to the training processes (torchrun's children), which checkpoint at the next step
# boundary and exit 0; then node 0 requeues the job, which resumes from that checkpoint.
#
# Inputs (environment): SLURM_JOB_NODELIST, SLURM_NNODES, SLURM_NODEID, SLURM_JOB_ID (set by SLURM);
# NPROC_PER_NODE (default: the GPUs on this node, else 1), MASTER_PORT (default 29500),
# ENTRYPOINT (default train.py), PYTHON (default .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

nodes="${SLURM_JOB_NODELIST:?SLURM_JOB_NODELIST is not set: run this inside a SLURM job}"
if command -v scontrol >/dev/null 2>&1; then
  head_node=$(scontrol show hostnames "$nodes" | head -n 1)
else
  head_node="${nodes%%,*}"  # a plain comma-separated list (no SLURM tools: tests, single host)
fi
nnodes="${SLURM_NNODES:-1}"
node_rank="${SLURM_NODEID:-0}"
port="${MASTER_PORT:-29500}"
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
  [ "$NPROC_PER_NODE" -gt 0 ] || NPROC_PER_NODE=1
fi
py="${PYTHON:-}"
[ -n "$py" ] || { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
entry="${ENTRYPOINT:-train.py}"

echo "[launch] node $node_rank/$nnodes, $NPROC_PER_NODE proc(s), rendezvous $head_node:$port (job ${SLURM_JOB_ID:-?})"
"$py" -m torch.distributed.run \
  --nnodes="$nnodes" --nproc_per_node="$NPROC_PER_NODE" \
  --rdzv_backend=c10d --rdzv_endpoint="$head_node:$port" --rdzv_id="${SLURM_JOB_ID:-local}" \
  "$entry" "$@" &
torchrun_pid=$!

preempted=0
forward() {
  preempted=1
  echo "[launch] preemption signal: asking the trainers to checkpoint and exit"
  pkill -USR1 -P "$torchrun_pid" 2>/dev/null || true
}
trap forward USR1 TERM

# `wait` returns early when a trapped signal arrives; keep waiting until torchrun itself has ended.
while :; do
  wait "$torchrun_pid"; status=$?
  kill -0 "$torchrun_pid" 2>/dev/null || break
done

if [ "$preempted" = 1 ] && [ "$status" = 0 ] && [ "$node_rank" = 0 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  echo "[launch] checkpoint saved; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" || echo "[launch] scontrol requeue failed; resubmit to resume"
fi
exit "$status"
