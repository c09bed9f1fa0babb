"""The device mesh, shardings of the train state and batches, and host <-> global arrays."""

import math
from typing import Any

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


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
  """Shardings of every train-state leaf: replicated (pure data parallelism)."""
  return jax.tree.map(lambda _: replicated(mesh), abstract_state)


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
