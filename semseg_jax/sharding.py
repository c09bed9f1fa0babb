"""The device mesh, shardings of the train state and batches, and host <-> global arrays."""

import math
import re
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def make_mesh(mesh_config: ml_collections.ConfigDict) -> Mesh:
  """A mesh over all devices with `mesh.shape` (one -1 takes the remaining devices)."""
  shape, axes = list(mesh_config.shape), tuple(mesh_config.axes)
  if len(shape) != len(axes):
    raise ValueError(f'config.mesh.shape {tuple(shape)} and config.mesh.axes {axes} must have '
                     'the same length.')
  num_devices = jax.device_count()
  if shape.count(-1) > 1:
    raise ValueError(f'config.mesh.shape {tuple(shape)}: at most one axis can be -1.')
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f'config.mesh.shape {tuple(mesh_config.shape)} resolves to {tuple(shape)}, '
                     f'which needs {math.prod(shape)} devices; there are {num_devices}.')
  for axis in mesh_config.data_axes:
    if axis not in axes:
      raise ValueError(f'config.mesh.data_axes names {axis!r}, which is not in config.mesh.axes '
                       f'{axes}.')
  return jax.make_mesh(tuple(shape), axes, axis_types=(AxisType.Auto,) * len(axes))


def batch_sharding(mesh: Mesh, data_axes: tuple[str, ...]) -> NamedSharding:
  """Leading (batch) dimension split over the data axes, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(tuple(data_axes)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def leaf_spec(path: str, shape: tuple[int, ...], rules: Sequence[tuple[str, Any]],
              mesh: Mesh) -> PartitionSpec:
  """The PartitionSpec of one state leaf from the first rule whose regex is found in its
  '/'-joined path (replicated when none is).

  A rule's spec is either a mesh axis name, meaning FSDP: the largest dimension divisible by
  that axis's size is split over it (a leaf with none stays replicated), or a tuple with one
  entry per dimension: an axis name, a tuple of names, or None.
  """
  for pattern, spec in rules:
    if not re.search(pattern, path):
      continue
    if isinstance(spec, str):
      size = mesh.shape[spec]
      dims = sorted((d for d in range(len(shape)) if shape[d] % size == 0 and shape[d] >= size),
                    key=lambda d: (-shape[d], d))
      if not dims:
        return PartitionSpec()
      parts = [None] * len(shape)
      parts[dims[0]] = spec
      return PartitionSpec(*parts)
    spec = tuple(spec)
    if len(spec) != len(shape):
      raise ValueError(f'config.mesh.partition_rules: {pattern!r} -> {spec} has {len(spec)} '
                       f'entries but {path} has shape {shape}.')
    for dim, axes in zip(shape, spec):
      names = (axes,) if isinstance(axes, str) else tuple(axes or ())
      split = math.prod(mesh.shape[a] for a in names)
      if dim % split:
        raise ValueError(f'config.mesh.partition_rules: {pattern!r} -> {spec} splits a '
                         f'dimension of {dim} of {path} {shape} into {split} parts.')
    return PartitionSpec(*spec)
  return PartitionSpec()


def _path_string(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def state_shardings(abstract_state: Any, mesh: Mesh,
                    rules: Sequence[tuple[str, Any]] = ()) -> Any:
  """Shardings of every train-state leaf by `rules` (config.mesh.partition_rules; see
  leaf_spec). Optimizer state leaves carry their parameter's path inside theirs (e.g.
  'opt_state/.../mu/encoder/.../kernel'), so the same rules shard them like the parameters.
  Without rules everything is replicated (pure data parallelism)."""
  for axis in {spec for _, spec in rules if isinstance(spec, str)}:
    if axis not in mesh.shape:
      raise ValueError(f'config.mesh.partition_rules names axis {axis!r}, which is not in '
                       f'config.mesh.axes {tuple(mesh.shape)}.')
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: NamedSharding(mesh, leaf_spec(_path_string(path), tuple(leaf.shape),
                                                       rules, mesh)),
      abstract_state)


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's local batch rows into global arrays sharded by `sharding`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def local_rows(array: jax.Array) -> np.ndarray:
  """The rows of a batch-sharded global array that live on this process, in order."""
  shards = {}
  for shard in array.addressable_shards:
    start = shard.index[0].start or 0
    shards.setdefault(start, shard.data)
  return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)], axis=0)


def distributed_arguments(coordinator_address: str | None, num_processes: int | None,
                          process_id: int | None, environ: Mapping[str, str]) -> dict | None:
  """Arguments for jax.distributed.initialize, or None for a single-process run.

  In order: main's --coordinator_address / --num_processes / --process_id flags (the
  arguments); the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID (what launch/slurm.sh sets); a SLURM job of several tasks or a multi-host TPU
  VM slice, which JAX detects by itself (empty arguments).
  """
  if num_processes and num_processes > 1:
    return {'coordinator_address': coordinator_address, 'num_processes': num_processes,
            'process_id': process_id}
  if int(environ.get('JAX_NUM_PROCESSES', '1')) > 1:
    return {'coordinator_address': environ.get('JAX_COORDINATOR_ADDRESS'),
            'num_processes': int(environ['JAX_NUM_PROCESSES']),
            'process_id': int(environ.get('JAX_PROCESS_ID', '0'))}
  if int(environ.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_JOB_ID' in environ:
    return {}
  tpu_hosts = environ.get('TPU_WORKER_HOSTNAMES', '')
  if len([h for h in tpu_hosts.split(',') if h]) > 1 or environ.get(
      'MEGASCALE_COORDINATOR_ADDRESS'):
    return {}
  return None
