"""A model-file test's tiny forward passes: the model initialised once (jitted) on `images`,
and jitted train and eval applies of those variables. jit compiles each on its first call, so
a test pays only for the passes it runs."""

from typing import Any, Callable

import flax.linen as nn
import jax


def jitted_applies(model: nn.Module, images: jax.Array, rngs: dict, init_train: bool = False
                   ) -> tuple[Any, Callable, Callable]:
  """(variables, train_apply(x, key) -> (outputs, updated batch_stats), eval_apply(x, key=None)
  -> outputs). `rngs` are the init's ('params', maybe 'dropout')."""
  variables = jax.jit(lambda x: model.init(rngs, x, train=init_train))(images)

  @jax.jit
  def train_apply(x, key):
    return model.apply(variables, x, train=True, rngs={'dropout': key}, mutable=['batch_stats'])

  @jax.jit
  def eval_apply(x, key=None):
    return model.apply(variables, x, train=False,
                       rngs=None if key is None else {'dropout': key})

  return variables, train_apply, eval_apply
