"""Losses on logits [N, h, w, C] and integer labels [N, H, W]; `ignore_index` counts nowhere."""

from typing import Any

import jax
import jax.numpy as jnp

from semseg_jax.models import layers


def resize_logits(logits: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """Bilinear (PyTorch align_corners=False) resize of NHWC logits to (H, W), in float32."""
  return layers.bilinear_resize(logits.astype(jnp.float32), tuple(hw))


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = 255) -> jax.Array:
  """Softmax cross-entropy averaged over the pixels whose label is not `ignore_index`.

  Logits are resized to the labels' size first. Returns 0 when every pixel is ignored.
  """
  logits = resize_logits(logits, labels.shape[1:3])
  valid = labels != ignore_index
  safe_labels = jnp.where(valid, labels, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
  count = jnp.sum(valid)
  return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(count, 1)


def total_loss(outputs: dict[str, Any], labels: jax.Array, ignore_index: int,
               aux_weight: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Main-head loss plus `aux_weight` times each auxiliary head's loss, and the parts."""
  parts = {'loss_main': cross_entropy(outputs['logits'], labels, ignore_index)}
  total = parts['loss_main']
  for i, aux_logits in enumerate(outputs.get('aux', [])):
    parts[f'loss_aux{i}'] = cross_entropy(aux_logits, labels, ignore_index)
    total = total + aux_weight * parts[f'loss_aux{i}']
  return total, parts
