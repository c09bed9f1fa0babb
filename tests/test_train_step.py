"""The jitted train step in-process: compute dtype, donation, optimizer state."""

import jax
import jax.numpy as jnp
import numpy as np

from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax import train
from semseg_jax.data import pipeline
from tests.helpers import e2e_config


def test_bfloat16_compute_keeps_float32_parameters():
  config = e2e_config.tiny_quickstart()
  config.model.dtype = 'bfloat16'
  config.schedule.warmup_steps = 0  # A full-size first step, so that every parameter moves.
  # 64x64 so that every attention has more than one key/value token (stage 1: 16x16 / sr 8).
  config.data.synthetic_image_size = config.augment.crop_size = (64, 64)
  config.augment.resize_scale = (128, 64)
  mesh, source, _, model, tx, schedule = train.setup(config, '')
  state, shardings = train.create_train_state(model, tx, jax.random.key(0), (64, 64), mesh)
  step_fn = train.make_train_step(model, tx, schedule, config, shardings, mesh)
  batch = next(iter(pipeline.train_dataset(config, source)))
  batch = sharding.to_global(batch, sharding.batch_sharding(mesh, ('data',)))
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = step_fn(state, batch)
  assert np.isfinite(float(metrics['loss'])) and int(state.step) == 1
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
  paths = jax.tree.leaves(optimizers.param_paths(state.params))
  unchanged = [p for p, a, b in zip(paths, jax.tree.leaves(before), jax.tree.leaves(state.params))
               if np.array_equal(a, np.asarray(b))]
  # Every parameter moves but possibly the attention key biases: they shift all of a query's
  # scores alike, which softmax ignores, so their gradient is zero up to rounding.
  assert all(p.endswith('attn/key/bias') for p in unchanged), unchanged
