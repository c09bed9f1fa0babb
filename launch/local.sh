#!/usr/bin/env bash
# Train (or --mode=eval / --mode=benchmark) on this machine's devices.
#   launch/local.sh CONFIG WORKDIR [--config.field=value ...] [--mode=...]
# e.g. launch/local.sh configs/ade20k_segformer.py:b0 runs/b0 --config.data.root=/data/ADEChallengeData2016
# Set CPU_DEVICES=N to split the CPU into N devices (to try data parallelism without accelerators).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,5p' "$0" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
cd "$(dirname "$0")/.."
if [ -n "${CPU_DEVICES:-}" ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${CPU_DEVICES}"
fi
exec python -m semseg_jax.main --config="$config" --workdir="$workdir" "$@"
