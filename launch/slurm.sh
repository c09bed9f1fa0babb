#!/usr/bin/env bash
# Train on several GPU nodes with SLURM: one process per node, each driving all of its GPUs.
#   sbatch --nodes=4 --gpus-per-node=8 --ntasks-per-node=1 launch/slurm.sh CONFIG WORKDIR [--config.field=value ...]
# e.g. sbatch --nodes=2 --gpus-per-node=8 --ntasks-per-node=1 launch/slurm.sh \
#        configs/segformer.py:cityscapes,b2 /shared/runs/b2 --config.data.root=/shared/cityscapes
# srun starts the same command on every node. It sets JAX_COORDINATOR_ADDRESS (the first
# node, port 12345 unless COORDINATOR_PORT is set), JAX_NUM_PROCESSES (SLURM_NTASKS) and
# JAX_PROCESS_ID (SLURM_PROCID), which semseg_jax.main passes to jax.distributed.initialize.
# WORKDIR and the data must be on a filesystem every node sees. Install first, on every node's
# environment: pip install -e . && pip install -U "jax[cuda13]>=0.10.2,<0.13"
#SBATCH --job-name=semseg_jax
#SBATCH --ntasks-per-node=1
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,5p' "$0" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
coordinator=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export JAX_COORDINATOR_ADDRESS="$coordinator:${COORDINATOR_PORT:-12345}"
export JAX_NUM_PROCESSES="$SLURM_NTASKS"
srun bash -c 'JAX_PROCESS_ID=$SLURM_PROCID exec python -m semseg_jax.main "$@"' _ \
  --config="$config" --workdir="$workdir" --config.model.dtype=bfloat16 "$@"
