#!/usr/bin/env bash
# Train. With no arguments: set up .venv (first run only), generate the toy-world data when absent,
# and run the embedded three-stage debug curriculum, ending with a closed-loop evaluation report.
#
#   ./run_train.sh                                   # the debug curriculum on whatever is here
#   CONFIG=train_configs/qwen3vl_2b/curriculum.toml ./run_train.sh --training.local_batch_size=4
#   NPROC=2 ./run_train.sh                           # 2 CPU processes (gloo) when there is no GPU
#
# GPUs (found with nvidia-smi): one process per GPU with NCCL (NGPU overrides the count).
# No GPU: NPROC processes on the CPU with gloo (default 1). Extra arguments go to train.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
CONFIG="${CONFIG:-train_configs/debug/curriculum.toml}"
DEBUG_DATA="${DEBUG_DATA:-outputs/data/toyworld}"

bash scripts/bootstrap.sh
py=.venv/bin/python

if [ "$CONFIG" = "train_configs/debug/curriculum.toml" ]; then
  # The debug curriculum reads generated data; generation is deterministic and skips existing files.
  "$py" -m torchtitan_vla.envs.toyworld.generate --out "$DEBUG_DATA"
fi

ngpu=0
if command -v nvidia-smi >/dev/null 2>&1; then
  ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l || echo 0)
fi
ngpu="${NGPU:-$ngpu}"
# The run folder, for the log file; a bad config prints nothing here and train.py reports it below.
run_dir=$("$py" -c "import sys; from torchtitan_vla.config import load_config, parse_command_line as p; c=p(['--config', *sys.argv[1:]]); cfg=load_config(c.config_path, c.overrides).config; print(f'{cfg.job.dump_folder}/{cfg.job.name}')" "$CONFIG" "$@" 2>/dev/null || true)
echo "[run_train] config: $CONFIG"
log=/dev/null
if [ -n "$run_dir" ]; then
  echo "[run_train] run folder: $run_dir (checkpoints/, metrics.jsonl, tb/, wandb/, train.log, report.json)"
  mkdir -p "$run_dir"
  log="$run_dir/train.log"
fi

if [ "$ngpu" -gt 0 ]; then
  echo "[run_train] $ngpu GPU(s): torchrun with NCCL"
  launch=("$py" -m torch.distributed.run --standalone --nproc_per_node="$ngpu" train.py)
else
  nproc="${NPROC:-1}"
  # One intra-op thread per process: the data-loader workers need the other cores, and oversubscribed
  # threads made CPU steps ~25x slower in our measurements.
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  echo "[run_train] no GPU: $nproc CPU process(es) with gloo"
  if [ "$nproc" -gt 1 ]; then
    launch=("$py" -m torch.distributed.run --standalone --nproc_per_node="$nproc" train.py)
  else
    launch=("$py" train.py)
  fi
fi
"${launch[@]}" --config "$CONFIG" "$@" 2>&1 | tee -a "$log"
