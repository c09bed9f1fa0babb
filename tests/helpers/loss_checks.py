"""A check every loss test shares: ignored pixels count nowhere, exactly."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_ignored_pixels_count_nowhere(loss_of_logits, logits: np.ndarray, labels: np.ndarray,
                                        ignore_index: int) -> float:
  """Under jit: the loss is finite; its gradient is finite, exactly 0 at ignored pixels and not
  all 0 elsewhere; new logits at the ignored pixels leave it bit-identical. Returns the loss."""
  jitted = jax.jit(loss_of_logits)
  value = float(jitted(logits))
  assert np.isfinite(value)
  grad = np.asarray(jax.jit(jax.grad(loss_of_logits))(jnp.asarray(logits)))
  ignored = labels == ignore_index
  assert np.all(np.isfinite(grad))
  assert np.all(grad[ignored] == 0)
  assert np.any(grad[~ignored] != 0)
  other = logits.copy()
  other[ignored] = np.random.default_rng(9).normal(size=other[ignored].shape) * 10
  assert float(jitted(other)) == value
  return value
