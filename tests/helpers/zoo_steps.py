"""One jitted training step of each tiny zoo model on the mesh of all devices (run with
XLA_FLAGS=--xla_force_host_platform_device_count=8): python -m tests.helpers.zoo_steps OUT.json [KEY...]

Writes {key: {'loss', 'finite', 'step', 'num_devices', 'aux' and 'detail' (loss terms of
auxiliary and detail heads), 'moved' (share of parameter arrays that changed)}} for
tests/models/test_zoo.py.
"""

import json
import sys

import jax
import numpy as np

from configs import default
from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from tests.helpers import zoo_specs


def one_step(key: str) -> dict:
  _, _, _, input_hw, _, _ = zoo_specs.TINY[key]
  config = default.get_config()
  config.unlock()
  config.train.batch_size = 8
  config.augment.crop_size = input_hw
  config.schedule.warmup_steps = 0
  config.optimizer.name = 'sgd'
  config.optimizer.lr = 0.01
  model = zoo_specs.build(key)
  mesh = sharding.make_mesh(config.mesh)
  params = jax.eval_shape(lambda: model.init(
      {'params': jax.random.key(0), 'dropout': jax.random.key(0)},
      np.zeros((1, *input_hw, 3), np.float32), train=False))['params']
  tx, schedule = optimizers.make_optimizer(config, params)
  # An 'rbg' key: the same initialisers, but XLA compiles the init twice as fast as threefry's.
  state, shardings = train_state.create_train_state(model, tx, jax.random.key(0, impl='rbg'), input_hw,
                                              mesh)
  step_fn = train_step.make_train_step(model, tx, schedule, config, shardings, mesh)
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(8, *input_hw, 3)).astype(np.float32),
           'label': rng.integers(0, zoo_specs.NUM_CLASSES, (8, *input_hw)).astype(np.int32)}
  batch['label'][:, 0] = 255  # Some ignored pixels.
  before = [np.asarray(x).copy() for x in jax.tree.leaves(state.params)]
  batch = sharding.to_global(batch, sharding.batch_sharding(mesh, ('data',)))
  state, metrics = step_fn(state, batch)
  # Loss terms are named loss_<output><index>_<loss>: count the outputs, not the terms.
  aux_outputs = {k.split('_')[1] for k in metrics if k.startswith('loss_aux')}
  detail_outputs = {k.split('_')[1] for k in metrics if k.startswith('loss_detail')}
  return {'loss': float(metrics['loss']), 'finite': bool(np.isfinite(float(metrics['loss']))),
          'step': int(state.step), 'num_devices': jax.device_count(), 'aux': len(aux_outputs),
          'detail': len(detail_outputs),
          'moved': float(np.mean([not np.array_equal(a, np.asarray(b)) for a, b in
                                  zip(before, jax.tree.leaves(state.params))])),
          'metrics': sorted(metrics)}


def main(out_path: str, keys: list[str]) -> None:
  results = {key: one_step(key) for key in (keys or zoo_specs.TINY)}
  with open(out_path, 'w') as f:
    json.dump(results, f)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2:])
