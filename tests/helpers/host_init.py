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
  """The variables of model.init on a (1, *input_hw, 3) image (inference form), as NumPy, drawn
  by `draw`."""
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  shapes = jax.eval_shape(lambda: model.init(rngs, jnp.zeros((1, *input_hw, 3)), train=False))
  return draw(shapes, seed)


def draw(shapes: Any, seed: int = 0) -> Any:
  """NumPy values for a tree of variable shapes (an abstract init's): kernels ~ N(0, 1 / fan_in)
  (LeCun scale: activations keep their size through depth), biases and running means 0, every
  other vector (norm scales, running variances, layer scales) 1."""
  rng = np.random.default_rng(seed)

  def draw_leaf(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name in ('bias', 'mean'):
      return np.zeros(leaf.shape, leaf.dtype)
    if len(leaf.shape) < 2:  # Norm scales, running variances, layer scales.
      return np.ones(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw_leaf, shapes)


def host_train_state(drawn: Any, tx: Any, step: int = 0) -> Any:
  """A TrainState (NumPy leaves) of the variables `drawn` at `step`, its optimizer state zeros
  (what SGD's and Adam's inits give: moments and counts start at 0)."""
  from semseg_jax import train_state  # pylint: disable=g-import-not-at-top
  opt_state = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype),
                           jax.eval_shape(tx.init, drawn['params']))
  return train_state.TrainState(
      step=np.asarray(step, np.int32), params=drawn['params'],
      batch_stats=drawn.get('batch_stats', {}), opt_state=opt_state,
      skipped_steps=np.zeros((), np.int32), bad_streak=np.zeros((), np.int32))


def fresh_train_state(model: nn.Module, tx: Any, input_hw: tuple[int, int], mesh: Any,
                      seed: int = 0) -> tuple[Any, Any]:
  """(state, shardings): the step-0 `host_train_state` of `variables(model, input_hw, seed)`,
  placed over `mesh` as training places it (sharding.state_shardings)."""
  from semseg_jax import sharding  # pylint: disable=g-import-not-at-top
  state = host_train_state(variables(model, input_hw, seed), tx)
  shardings = sharding.state_shardings(jax.eval_shape(lambda: state), mesh)
  return jax.device_put(state, shardings), shardings


def with_random_vectors(variables: Any, seed: int = 0) -> Any:
  """`variables` with every vector drawn too (biases, norm scales and offsets, running means
  and variances in [0.5, 2]), so that no layer of a forward-pass transcription test is an
  identity and no residual branch is zero."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if leaf.ndim > 1:
      return leaf
    name = str(getattr(path[-1], 'key', path[-1]))
    if name == 'var':
      return rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
    return (rng.normal(size=leaf.shape) * 0.2 + (name == 'scale')).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(draw, variables)
