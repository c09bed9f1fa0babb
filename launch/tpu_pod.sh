#!/usr/bin/env bash
# Train on a multi-host Cloud TPU VM slice (v4-32, v5p-64, ...): the same command on every worker.
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.field=value ...]
# e.g. launch/tpu_pod.sh my-v4-32 us-central2-b configs/segformer.py:cityscapes,b5 \
#        gs://bucket/runs/b5 --config.data.name=arrayrecord:gs://bucket/cityscapes
# Copies this repository to every worker, installs it with jax[tpu], then starts the run on all
# workers at once. JAX detects the slice itself (TPU_WORKER_HOSTNAMES, the TPU metadata), so no
# process flags are needed; each worker reads its share of the data; only worker 0 writes logs.
# WORKDIR and the data should be on storage every worker sees (gs://, or a shared filesystem).
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,5p' "$0" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
cd "$(dirname "$0")/.."
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="$1"
}
gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all . "$tpu":~/semseg_jax
ssh_all "cd ~/semseg_jax && pip install -q -e . && pip install -q -U 'jax[tpu]>=0.10.2,<0.13'"
extra=$(printf ' %q' "$@")
ssh_all "cd ~/semseg_jax && python -m semseg_jax.main --config=$(printf %q "$config") \
  --workdir=$(printf %q "$workdir") --config.model.dtype=bfloat16$extra"
