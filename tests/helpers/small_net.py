"""A small conv net standing in for the zoo's models where a test needs the real train step
and pipeline but not a real model (its steps compile in seconds)."""

import flax.linen as nn
import jax

from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.data import datasets
from semseg_jax.data import pipeline


class SmallNet(nn.Module):
  """Two 3x3 convs (the second with stride 2) and a 1x1 classifier: logits at 1/2 size."""
  num_classes: int
  detail: bool = False  # Also a 'detail' output: one boundary logit (as STDC's detail head).

  @nn.compact
  def __call__(self, images, train=False):
    x = nn.relu(nn.Conv(16, (3, 3))(images))
    x = nn.relu(nn.Conv(32, (3, 3), strides=2)(x))
    outputs = {'logits': nn.Conv(self.num_classes, (1, 1))(x)}
    if self.detail:  # Made at init (train=False) too, returned in training only.
      detail = nn.Conv(1, (1, 1))(x)
      if train:
        outputs['detail'] = [detail]
    return outputs


def small_net_setup(config, detail: bool = False):
  """(mesh, train state, jitted train step, one host batch) for SmallNet under `config`."""
  mesh = sharding.make_mesh(config.mesh)
  source = datasets.make_source(config.data, config.data.train_split, config.seed)
  model = SmallNet(source.num_classes, detail)
  tx, schedule = optimizers.make_optimizer(config)
  state, shardings = train_state.create_train_state(model, tx, jax.random.key(0), (32, 32), mesh)
  step_fn = train_step.make_train_step(model, tx, schedule, config, shardings, mesh)
  local = next(iter(pipeline.train_dataset(config, source)))
  return mesh, state, step_fn, local
