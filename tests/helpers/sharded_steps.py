"""Runs a few train steps of the tiny quickstart (tests.helpers.e2e_config) and one evaluation
on however many devices this process has, and saves losses, parameters and the confusion matrix
(test_main's device comparison calls `run` in its own 1-device process and through this script
on 8 devices):

python -m tests.helpers.sharded_steps JOBS.json   (a list of `run` keyword arguments)

With a reference (another run's output), also evaluates that run's final variables here, so the
confusion matrices of the same parameters on different device counts can be compared. `fsdp`
trains on a data x fsdp = (devices / 2) x 2 mesh with every state leaf split over `fsdp`
(config.mesh.partition_rules = (('.*', 'fsdp'),)); `data` (default) is pure data parallelism.
With a checkpoint workdir the final state is also saved there (tests.helpers.mesh_restore reads
it).
"""

import json
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
from semseg_jax.evaluators import common  # pylint: disable=g-import-not-at-top
from semseg_jax.evaluators import inference  # pylint: disable=g-import-not-at-top
from tests.helpers import e2e_config  # pylint: disable=g-import-not-at-top

# Train steps of every run (tests.helpers.mesh_restore trains with this schedule): the 4 of
# test_multiprocess.py's 1-device reference, whose programs this 1-device run then reads from
# the compilation cache (the two tests run one after the other on the same pytest worker).
NUM_STEPS = 4


def run(out_path: str, reference_path: str = '-', parallelism: str = 'data',
        checkpoint_workdir: str = '') -> None:
  config = e2e_config.tiny_quickstart()
  config.train.num_steps = NUM_STEPS
  if parallelism == 'fsdp':
    config.mesh.shape, config.mesh.axes = (-1, 2), ('data', 'fsdp')
    config.mesh.data_axes = ('data', 'fsdp')
    config.mesh.partition_rules = (('.*', 'fsdp'),)
  mesh = sharding.make_mesh(config.mesh)
  train_source = datasets.make_source(config.data, 'train', config.seed)
  eval_source = datasets.make_source(config.data, 'val', config.seed)
  model, tx, schedule = train_state.build_model_and_optimizer(config, train_source.num_classes)
  state, state_shardings = train_state.create_train_state(
      model, tx, jax.random.key(config.seed), tuple(config.augment.crop_size), mesh,
      config.mesh.partition_rules)
  step_fn = train_step.make_train_step(model, tx, schedule, config, state_shardings, mesh)
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  it = iter(pipeline.train_dataset(config, train_source))
  losses = []
  for _ in range(config.train.num_steps):
    state, metrics = step_fn(state, sharding.to_global(next(it), batch_sharding))
    losses.append(float(metrics['loss']))
  data_axes = tuple(config.mesh.data_axes)
  eval_step = inference.make_eval_step(model, config.eval, mesh, data_axes,
                                       eval_source.num_classes, config.data.ignore_index)

  def evaluate(variables):
    return common.run_over_source(eval_step, variables, eval_source, config.eval, config.data,
                                  mesh, data_axes, 'val').confusion

  variables = state.variables()
  sharded = [leaf for leaf in jax.tree.leaves(state)
             if not leaf.sharding.is_fully_replicated]
  # The leaves with a dimension that FSDP's 2-way axis divides (every one of them is split).
  splittable = [leaf for leaf in jax.tree.leaves(state) if any(d % 2 == 0 for d in leaf.shape)]
  outputs = {'losses': np.array(losses), 'num_devices': jax.device_count(),
             'num_sharded_leaves': len(sharded), 'num_splittable_leaves': len(splittable),
             'confusion': evaluate(variables)}
  if reference_path != '-':
    with np.load(reference_path) as reference:
      paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables)]
      leaves = [jax.device_put(reference[p], leaf.sharding)
                for p, leaf in zip(paths, jax.tree.leaves(variables))]
    reference_variables = jax.tree.unflatten(jax.tree.structure(variables), leaves)
    outputs['reference_confusion'] = evaluate(reference_variables)
  if checkpoint_workdir:
    manager = checkpointing.make_manager(checkpoint_workdir, config)
    compiles = []  # Programs compiled while saving (orbax's slices of replicated arrays).
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, *_, **__: compiles.append(1) if event.endswith('backend_compile_duration')
        else None)
    checkpointing.save(manager, config.train.num_steps, state, it)
    manager.wait_until_finished()
    outputs['compiles_during_save'] = len(compiles)
  np.savez(out_path, **outputs, **e2e_config.flat_leaves(variables))


if __name__ == '__main__':
  for job in json.loads(open(sys.argv[1]).read()):
    run(**job)
