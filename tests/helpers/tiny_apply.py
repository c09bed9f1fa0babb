"""Every output of a module at once (inference and training outputs, updated statistics,
gradients), in one jitted call: for comparing two ways of computing a module."""

from typing import Any

import flax.linen as nn
import jax


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
