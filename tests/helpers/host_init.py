"""Model variables drawn on the host (NumPy) in the shapes the model's init gives: for tests
that need a model's numbers to be sane but not its own initialisers (those are tested in the
model's file). XLA compiles no initialiser, which is most of what compiling a tiny model's init
costs."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def variables(model: nn.Module, input_hw: tuple[int, int], seed: int = 0) -> Any:
  """The variables of model.init on a (1, *input_hw, 3) image (inference form), as NumPy:
  kernels ~ N(0, 1 / fan_in) (LeCun scale: activations keep their size through depth), biases
  and running means 0, every other vector (norm scales, running variances, layer scales) 1."""
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  shapes = jax.eval_shape(lambda: model.init(rngs, jnp.zeros((1, *input_hw, 3)), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name in ('bias', 'mean'):
      return np.zeros(leaf.shape, leaf.dtype)
    if len(leaf.shape) < 2:  # Norm scales, running variances, layer scales.
      return np.ones(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)
