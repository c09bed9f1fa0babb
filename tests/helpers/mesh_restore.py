"""Restores the checkpoint tests.helpers.sharded_steps saved (on another mesh) onto a pure
data-parallel mesh of this process's devices, runs one train step on it, and saves the restored
variables (test_main compares them with the saved ones; it calls `run` in its own process).

python -m tests.helpers.mesh_restore CHECKPOINT_WORKDIR OUT.npz
"""

import sys

from absl import flags

flags.FLAGS.mark_as_parsed()

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from semseg_jax import checkpointing  # pylint: disable=g-import-not-at-top
from semseg_jax import sharding  # pylint: disable=g-import-not-at-top
from semseg_jax import train_state  # pylint: disable=g-import-not-at-top
from semseg_jax import train_step  # pylint: disable=g-import-not-at-top
from semseg_jax.data import datasets  # pylint: disable=g-import-not-at-top
from semseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
from tests.helpers import e2e_config  # pylint: disable=g-import-not-at-top
from tests.helpers import sharded_steps  # pylint: disable=g-import-not-at-top


def run(workdir: str, out_path: str) -> None:
  config = e2e_config.tiny_quickstart()
  # sharded_steps' run length: the same schedule, so the same train step program as the
  # 1-device run of the same test (compiled once, read from the compilation cache here).
  config.train.num_steps = sharded_steps.NUM_STEPS
  mesh = sharding.make_mesh(config.mesh)
  train_source = datasets.make_source(config.data, 'train', config.seed)
  model, tx, schedule = train_state.build_model_and_optimizer(config, train_source.num_classes)
  target, state_shardings = train_state.abstract_train_state(
      model, tx, tuple(config.augment.crop_size), mesh)
  manager = checkpointing.make_manager(workdir, config)
  it = iter(pipeline.train_dataset(config, train_source))
  state = checkpointing.restore(manager, manager.latest_step(), target, it)
  restored = e2e_config.flat_leaves(state.variables())
  assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state))
  step_fn = train_step.make_train_step(model, tx, schedule, config, state_shardings, mesh)
  batch = sharding.to_global(next(it), sharding.batch_sharding(mesh, ('data',)))
  state, metrics = step_fn(state, batch)
  np.savez(out_path, num_devices=jax.device_count(), step=int(state.step),
           loss=float(metrics['loss']), **restored)


if __name__ == '__main__':
  run(*sys.argv[1:])
