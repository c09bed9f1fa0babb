"""Per-pixel losses: softmax cross-entropy, its online hard example mining form (OHEM) and the
focal loss. Each is `fn(logits, labels, ignore_index=255, class_weights=None, **options)`."""

from typing import Sequence

import jax
import jax.numpy as jnp

from semseg_jax.losses import common


def _true_class_weight(class_weights, labels, num_classes):
  """Per-pixel weight of each pixel's true class."""
  return common.class_weight_vector(class_weights, num_classes)[labels]


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                  class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0,
                  average: str = 'valid') -> jax.Array:
  """Softmax cross-entropy.

  Per pixel, as PyTorch's `F.cross_entropy(weight=w, label_smoothing=eps)`:
  (1 - eps) * w_y * (-log p_y) + eps / C * sum_c w_c * (-log p_c). The sum over pixels is divided
  by the number of non-ignored pixels (`average='valid'`, mmsegmentation's avg_non_ignore), by
  all pixels (`average='all'`, mmsegmentation's default), or by the sum of the non-ignored
  pixels' w_y (`average='weight'`: PyTorch's and Torch7's weighted mean, the class-weighted
  references' form). Returns 0 when every pixel is ignored.
  """
  if average not in ('valid', 'all', 'weight'):
    raise ValueError(f"loss option average={average!r}; expected 'valid', 'all' or 'weight'.")
  prepared = common.prepare(logits, labels, ignore_index)
  log_probs, valid, safe = prepared.log_probs, prepared.valid, prepared.safe_labels
  num_classes = log_probs.shape[-1]
  per_pixel = -common.pick(log_probs, safe) * _true_class_weight(class_weights, safe, num_classes)
  if label_smoothing > 0:
    weights = common.class_weight_vector(class_weights, num_classes)
    uniform = -jnp.sum(log_probs * weights, axis=-1) / num_classes
    per_pixel = (1 - label_smoothing) * per_pixel + label_smoothing * uniform
  if average == 'all':
    return jnp.sum(jnp.where(valid, per_pixel, 0.0)) / per_pixel.size
  if average == 'weight':
    total_weight = jnp.sum(jnp.where(valid, _true_class_weight(class_weights, safe, num_classes),
                                     0.0))
    return jnp.where(total_weight > 0, jnp.sum(jnp.where(valid, per_pixel, 0.0))
                     / jnp.maximum(total_weight, 1e-12), 0.0)
  return common.masked_mean(per_pixel, valid)


OHEM_DEFINITIONS = ('mmseg', 'kept_mean')


def image_groups(x: jax.Array, images_per_group: int) -> jax.Array:
  """[N, ...] -> [N / g, g * ...]: contiguous groups of g images (all N when g is 0), each
  flattened."""
  n = x.shape[0]
  size = images_per_group or n
  if n % size:
    raise ValueError(f'ohem_cross_entropy: images_per_group={images_per_group} must divide the '
                     f'batch of {n} images.')
  return x.reshape(n // size, -1)


def ohem_cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                       class_weights: Sequence[float] | None = None, thresh: float = 0.7,
                       min_kept: int = 100_000, images_per_group: int = 0,
                       definition: str = 'mmseg', avg_non_ignore: bool = False) -> jax.Array:
  """Cross-entropy on the hard pixels (online hard example mining), as the references define it.

  The references mine each GPU's images separately; here each group of `images_per_group`
  consecutive images of the batch (0: the whole batch) stands for one GPU of the reference, so
  set it to the reference's images per GPU. In a group, a valid pixel is kept when the
  probability of its true class is below max(thresh, the k-th smallest such probability of the
  group), strictly, so at least min(k, valid pixels - 1) pixels are kept. The loss is the mean
  over groups of:

  * `definition='mmseg'` (mmsegmentation's OHEMPixelSampler + CrossEntropyLoss): k = min_kept
    x the group's images; the kept pixels' (class-weighted) cross-entropy summed and divided by
    all pixels of the group, or by its valid pixels with `avg_non_ignore=True`.
  * `definition='kept_mean'` (HRNet's OhemCrossEntropy, which SFNet uses): k = min_kept; the
    mean of the kept pixels' (class-weighted) cross-entropy.

  The mean over groups is the average of the GPUs' losses that data-parallel training takes.
  """
  if definition not in OHEM_DEFINITIONS:
    raise ValueError(f'ohem_cross_entropy: definition={definition!r}; expected one of '
                     f'{OHEM_DEFINITIONS}.')
  prepared = common.prepare(logits, labels, ignore_index)
  log_probs, valid, safe = prepared.log_probs, prepared.valid, prepared.safe_labels
  true_log_prob = common.pick(log_probs, safe)
  per_pixel = -true_log_prob * _true_class_weight(class_weights, safe, log_probs.shape[-1])
  true_prob = jax.lax.stop_gradient(jnp.exp(true_log_prob))
  probs = image_groups(jnp.where(valid, true_prob, jnp.inf), images_per_group)  # [G, M]
  valid = image_groups(valid, images_per_group)
  per_pixel = image_groups(per_pixel, images_per_group)
  num_valid = jnp.sum(valid, axis=1)
  k = min_kept * (probs.shape[1] // (labels.shape[1] * labels.shape[2])) if (
      definition == 'mmseg') else min_kept
  index = jnp.clip(jnp.minimum(k, num_valid - 1), 0, probs.shape[1] - 1)
  kth = jnp.take_along_axis(jnp.sort(probs, axis=1), index[:, None], axis=1)[:, 0]
  kept = valid & (probs < jnp.maximum(kth, thresh)[:, None])
  kept_sum = jnp.sum(jnp.where(kept, per_pixel, 0.0), axis=1)
  if definition == 'kept_mean':
    count = jnp.sum(kept, axis=1)
  else:
    count = num_valid if avg_non_ignore else jnp.full_like(num_valid, probs.shape[1])
  return jnp.mean(kept_sum / jnp.maximum(count, 1))


def focal_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
               class_weights: Sequence[float] | None = None, gamma: float = 2.0,
               alpha: float | Sequence[float] = 0.25) -> jax.Array:
  """Softmax focal loss (Lin et al. 2017): -alpha_y * (1 - p_y)^gamma * log p_y, averaged over
  valid pixels. `alpha` is one number or one per class; class_weights multiply further."""
  prepared = common.prepare(logits, labels, ignore_index)
  log_probs, valid, safe = prepared.log_probs, prepared.valid, prepared.safe_labels
  log_p = common.pick(log_probs, safe)
  alpha_y = (jnp.asarray(alpha, jnp.float32)[safe] if isinstance(alpha, (list, tuple))
             else jnp.float32(alpha))
  per_pixel = (-alpha_y * (1 - jnp.exp(log_p)) ** gamma * log_p
               * _true_class_weight(class_weights, safe, log_probs.shape[-1]))
  return common.masked_mean(per_pixel, valid)
