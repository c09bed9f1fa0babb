"""The steps every loss shares: resize the logits to the labels, prepare probabilities and the
valid mask, average over valid pixels, average over classes.

Conventions of every loss in this package: logits [N, h, w, C] in any float dtype are resized
bilinearly to the labels' size [N, H, W] and all arithmetic is float32; a pixel labelled
`ignore_index` counts nowhere (its probabilities and one-hot are zeroed before any statistic).
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from semseg_jax.models import layers


def resize_logits(logits: jax.Array, hw: Sequence[int]) -> jax.Array:
  """Bilinear (PyTorch align_corners=False) resize of NHWC logits to (H, W), in float32."""
  return layers.bilinear_resize(logits.astype(jnp.float32), tuple(hw))


class Prepared(NamedTuple):
  """What the losses compute from (logits, labels); under jit the unused fields cost nothing."""
  logits: jax.Array  # float32 [N, H, W, C], at the labels' size.
  log_probs: jax.Array  # log_softmax(logits).
  probs: jax.Array  # softmax(logits), 0 at ignored pixels.
  onehot: jax.Array  # float32 one-hot of the labels, 0 at ignored pixels.
  valid: jax.Array  # bool [N, H, W]: labels != ignore_index.
  safe_labels: jax.Array  # int [N, H, W], ignored pixels set to 0 (safe to index with).


def prepare(logits: jax.Array, labels: jax.Array, ignore_index: int) -> Prepared:
  """Resizes the logits to the labels and derives the shared per-pixel quantities."""
  labels = jnp.asarray(labels)
  logits = resize_logits(jnp.asarray(logits), labels.shape[1:3])
  num_classes = logits.shape[-1]
  valid = labels != ignore_index
  mask = valid[..., None].astype(jnp.float32)
  safe_labels = jnp.where(valid, labels, 0)
  return Prepared(
      logits=logits, log_probs=jax.nn.log_softmax(logits, axis=-1),
      probs=jax.nn.softmax(logits, axis=-1) * mask,
      onehot=jax.nn.one_hot(safe_labels, num_classes, dtype=jnp.float32) * mask,
      valid=valid, safe_labels=safe_labels)


def pick(values: jax.Array, labels: jax.Array) -> jax.Array:
  """values[..., labels] per pixel, exactly: the sum over classes of the values masked to the
  label's class. A gather here (take_along_axis) has a scatter for gradient, which XLA:CPU
  computes by materialising a zero array of the logits' size first; the mask fuses."""
  classes = jax.lax.broadcasted_iota(labels.dtype, values.shape, values.ndim - 1)
  return jnp.sum(jnp.where(classes == labels[..., None], values, 0), axis=-1)


def class_weight_vector(class_weights: Sequence[float] | None, num_classes: int) -> jax.Array:
  """[C] float32 class weights (ones when none are given)."""
  if class_weights is None or len(class_weights) == 0:
    return jnp.ones(num_classes, jnp.float32)
  if len(class_weights) != num_classes:
    raise ValueError(f'class_weights has {len(class_weights)} entries for {num_classes} classes.')
  return jnp.asarray(class_weights, jnp.float32)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values` where `mask` holds (0 where it holds nowhere)."""
  total = jnp.sum(jnp.where(mask, values, 0.0))
  return total / jnp.maximum(jnp.sum(mask), 1)


def class_average(values: jax.Array, weights: jax.Array, mask: jax.Array | None = None
                  ) -> jax.Array:
  """sum_c w_c x_c / sum_c w_c over the last axis, restricted to `mask` (same shape as
  `values`) where given; 0 where the weights sum to 0."""
  weights = jnp.broadcast_to(weights, values.shape)
  if mask is not None:
    weights = weights * mask.astype(jnp.float32)
  total = jnp.sum(weights, axis=-1)
  return jnp.where(total > 0, jnp.sum(weights * values, axis=-1) / jnp.where(total > 0, total, 1.0),
                   0.0)


def positive_power(x: jax.Array, exponent: float) -> jax.Array:
  """x ** exponent where x > 0, exactly 0 (with zero gradient) where x <= 0: no infinite
  derivative of a fractional power at 0, no NaN from a tiny negative rounding error."""
  positive = x > 0
  return jnp.where(positive, jnp.where(positive, x, 1.0) ** exponent, 0.0)
