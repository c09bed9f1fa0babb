"""A model-file test's tiny forward passes: the model initialised once (jitted) on `images`,
and jitted train and eval applies of those variables. jit compiles each on its first call, so
a test pays only for the passes it runs. And every output of a module at once, for comparing
two ways of computing it."""

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


def outputs_and_gradients(module: nn.Module, variables: Any, x: jax.Array, key: jax.Array
                          ) -> tuple[Any, Any, Any, Any]:
  """(eval output, train output, updated batch_stats, gradients of the sum of squares of the
  train output's leaves with respect to the parameters), in one jitted call (one compile)."""
  def loss(params):
    out, updates = module.apply({**variables, 'params': params}, x, train=True,
                                rngs={'dropout': key}, mutable=['batch_stats'])
    return sum(jax.numpy.sum(o**2) for o in jax.tree.leaves(out)), (out, updates)

  def outputs(variables):
    (_, (train_out, updates)), grads = jax.value_and_grad(loss, has_aux=True)(
        variables['params'])
    return module.apply(variables, x), train_out, updates['batch_stats'], grads
  return jax.jit(outputs)(variables)
