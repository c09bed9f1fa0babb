"""Numerical safety of the train step: non-finite steps are skipped and counted, training stops
after too many in a row; gradient accumulation gives the full batch's update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax import sharding
from semseg_jax import train
from semseg_jax.data import pipeline
from tests.helpers import e2e_config
from tests.helpers.small_net import SmallNet
from tests.helpers.small_net import small_net_setup


def _config(batch_size=4):
  config = e2e_config.tiny_quickstart()
  config.train.batch_size = batch_size
  config.schedule.name, config.schedule.warmup_steps = 'constant', 0
  config.optimizer.lr = 1e-2
  return config


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_a_nan_step_changes_nothing_but_the_counters():
  mesh, state, step_fn, local = small_net_setup(_config())
  to_global = lambda b: sharding.to_global(b, sharding.batch_sharding(mesh, ('data',)))
  poisoned = dict(local, image=local['image'].copy())
  poisoned['image'][1, 3, 4, 0] = np.nan
  before = _host((state.params, state.opt_state))
  state, metrics = step_fn(state, to_global(poisoned))
  assert not np.isfinite(float(metrics['loss']))
  after = _host((state.params, state.opt_state))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert (int(state.step), int(state.skipped_steps), int(state.bad_streak)) == (1, 1, 1)
  state, metrics = step_fn(state, to_global(local))
  assert np.isfinite(float(metrics['loss']))
  assert (int(state.step), int(state.skipped_steps), int(state.bad_streak)) == (2, 1, 0)
  changed = _host(state.params)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[0]),
                                                      jax.tree.leaves(changed)))


@pytest.mark.parametrize('accum_steps', [2, 4])
def test_gradient_accumulation_equals_the_full_batch(accum_steps):
  config = _config(batch_size=4)
  mesh, state, full_step, local = small_net_setup(config)
  local['label'][0, :20] = config.data.ignore_index  # Micro-batches of unequal weight.
  batch = sharding.to_global(local, sharding.batch_sharding(mesh, ('data',)))
  config.train.grad_accum_steps = accum_steps
  _, _, accum_step, _ = small_net_setup(config)
  copy = lambda s: jax.tree.map(jnp.copy, s)
  full_state, full_metrics = full_step(copy(state), batch)
  accum_state, accum_metrics = accum_step(copy(state), batch)
  np.testing.assert_allclose(float(accum_metrics['loss']), float(full_metrics['loss']),
                             rtol=1e-5)
  np.testing.assert_allclose(float(accum_metrics['grad_norm']),
                             float(full_metrics['grad_norm']), rtol=1e-4)
  for a, b in zip(jax.tree.leaves(_host(full_state.params)),
                  jax.tree.leaves(_host(accum_state.params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_batch_must_divide_into_micro_batches():
  config = _config(batch_size=4)
  config.train.grad_accum_steps = 3
  with pytest.raises(ValueError, match='config.train.grad_accum_steps=3'):
    small_net_setup(config)


def test_training_stops_after_max_bad_steps(tmp_path, monkeypatch):
  """Through the training loop: every batch poisoned, so the run stops with an error naming
  the field once max_bad_steps consecutive steps were skipped."""
  config = _config()
  config.train.num_steps, config.train.log_every, config.train.max_bad_steps = 10, 1, 3
  monkeypatch.setattr(train.models, 'build_model',
                      lambda model_config, num_classes: SmallNet(num_classes))
  original = pipeline.TrainPreprocess.random_map

  def poisoned(self, example, rng):
    out = original(self, example, rng)
    out['image'][0, 0, 0] = np.inf
    return out

  monkeypatch.setattr(pipeline.TrainPreprocess, 'random_map', poisoned)
  with pytest.raises(FloatingPointError, match='config.train.max_bad_steps=3'):
    train.train_and_evaluate(config, str(tmp_path))
