"""Losses on logits [N, h, w, C] and integer labels [N, H, W]; `ignore_index` counts nowhere.

Every loss is a pure, jittable `fn(logits, labels, ignore_index=255, class_weights=None,
**options) -> scalar` that first resizes the logits bilinearly to the labels' size. The config
composes them: `config.loss.main` and `config.loss.aux` are lists of (name, weight, options)
for the main head and for each auxiliary head; names are keys of `LOSSES`. The losses named in
`DISTANCE_LOSSES` also take the ground truth's boundary-distance maps, which the input pipeline
adds to the batch when a configured term needs them (see `semseg_jax.distance_losses`).
"""

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from semseg_jax import detail_loss
from semseg_jax import distance_losses
from semseg_jax import region_losses
from semseg_jax.models import layers


def resize_logits(logits: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """Bilinear (PyTorch align_corners=False) resize of NHWC logits to (H, W), in float32."""
  return layers.bilinear_resize(logits.astype(jnp.float32), tuple(hw))


def _prepare(logits, labels, ignore_index):
  """(log-probabilities [N, H, W, C], valid mask, labels with ignored pixels set to 0)."""
  logits = resize_logits(logits, labels.shape[1:3])
  valid = labels != ignore_index
  return jax.nn.log_softmax(logits, axis=-1), valid, jnp.where(valid, labels, 0)


def _pick(values: jax.Array, labels: jax.Array) -> jax.Array:
  """values[..., labels] per pixel."""
  return jnp.take_along_axis(values, labels[..., None], axis=-1)[..., 0]


def _class_weight(class_weights, labels, num_classes):
  """Per-pixel weight of each pixel's true class."""
  return region_losses.class_weight_vector(class_weights, num_classes)[labels]


def _mean(per_pixel, valid, average):
  total = jnp.sum(jnp.where(valid, per_pixel, 0.0))
  if average == 'valid':
    return total / jnp.maximum(jnp.sum(valid), 1)
  if average == 'all':
    return total / per_pixel.size
  raise ValueError(f"loss option average={average!r}; expected 'valid' or 'all'.")


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                  class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0,
                  average: str = 'valid') -> jax.Array:
  """Softmax cross-entropy.

  Per pixel, as PyTorch's `F.cross_entropy(weight=w, label_smoothing=eps)`:
  (1 - eps) * w_y * (-log p_y) + eps / C * sum_c w_c * (-log p_c). The sum over pixels is divided
  by the number of non-ignored pixels (`average='valid'`, mmsegmentation's avg_non_ignore) or by
  all pixels (`average='all'`, mmsegmentation's default). Returns 0 when every pixel is ignored.
  """
  log_probs, valid, safe = _prepare(logits, labels, ignore_index)
  num_classes = log_probs.shape[-1]
  per_pixel = -_pick(log_probs, safe) * _class_weight(class_weights, safe, num_classes)
  if label_smoothing > 0:
    weights = region_losses.class_weight_vector(class_weights, num_classes)
    uniform = -jnp.sum(log_probs * weights, axis=-1) / num_classes
    per_pixel = (1 - label_smoothing) * per_pixel + label_smoothing * uniform
  return _mean(per_pixel, valid, average)


def ohem_cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                       class_weights: Sequence[float] | None = None, thresh: float = 0.7,
                       min_kept: int = 100_000) -> jax.Array:
  """Online hard example mining (mmsegmentation's OHEMPixelSampler + cross-entropy).

  Over the whole batch, keeps the valid pixels whose probability of their true class is below
  max(thresh, the min_kept-th smallest such probability) and averages their (class-weighted)
  cross-entropy. As in mmsegmentation the comparison is strict, so at least
  min(min_kept, number of valid pixels - 1) pixels are kept.
  """
  log_probs, valid, safe = _prepare(logits, labels, ignore_index)
  true_prob = jax.lax.stop_gradient(jnp.exp(_pick(log_probs, safe)))
  flat = jnp.where(valid, true_prob, jnp.inf).reshape(-1)
  num_valid = jnp.sum(valid)
  kth = jnp.sort(flat)[jnp.clip(jnp.minimum(min_kept, num_valid - 1), 0, flat.size - 1)]
  threshold = jnp.maximum(kth, thresh)
  kept = valid & (true_prob < threshold)
  per_pixel = -_pick(log_probs, safe) * _class_weight(class_weights, safe, log_probs.shape[-1])
  return _mean(per_pixel, kept, 'valid')


def focal_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
               class_weights: Sequence[float] | None = None, gamma: float = 2.0,
               alpha: float | Sequence[float] = 0.25) -> jax.Array:
  """Softmax focal loss (Lin et al. 2017): -alpha_y * (1 - p_y)^gamma * log p_y, averaged over
  valid pixels. `alpha` is one number or one per class; class_weights multiply further."""
  log_probs, valid, safe = _prepare(logits, labels, ignore_index)
  log_p = _pick(log_probs, safe)
  alpha_y = (jnp.asarray(alpha, jnp.float32)[safe] if isinstance(alpha, (list, tuple))
             else jnp.float32(alpha))
  per_pixel = (-alpha_y * (1 - jnp.exp(log_p)) ** gamma * log_p
               * _class_weight(class_weights, safe, log_probs.shape[-1]))
  return _mean(per_pixel, valid, 'valid')


LOSSES: dict[str, Callable[..., jax.Array]] = {
    'cross_entropy': cross_entropy,
    'ohem_cross_entropy': ohem_cross_entropy,
    'focal': focal_loss,
    'dice': region_losses.dice_loss,
    'generalized_dice': region_losses.generalized_dice_loss,
    'iou': region_losses.iou_loss,
    'tversky': region_losses.tversky_loss,
    'focal_tversky': region_losses.focal_tversky_loss,
    'lovasz_softmax': region_losses.lovasz_softmax_loss,
    'exp_log': region_losses.exp_log_loss,
    'combo': region_losses.combo_loss,
    'dpce': distance_losses.dpce_loss,
    'boundary': distance_losses.boundary_loss,
    'hausdorff_dt': distance_losses.hausdorff_dt_loss,
}

# Losses that take the batch's `distance_classes` and `boundary_distance` maps.
DISTANCE_LOSSES = frozenset({'dpce', 'boundary', 'hausdorff_dt'})
DISTANCE_KEYS = ('distance_classes', 'boundary_distance')


def needs_distance_maps(loss_config: Any) -> bool:
  """Whether any main or auxiliary term is a distance-map loss."""
  return any(term[0] in DISTANCE_LOSSES for term in (*loss_config.main, *loss_config.aux))


def check_loss_terms(terms: Sequence, field: str) -> None:
  """Fails naming `field` unless terms is a sequence of (known name, weight, options dict)."""
  for term in terms:
    if (not isinstance(term, (tuple, list)) or len(term) != 3 or term[0] not in LOSSES
        or not isinstance(term[2], dict)):
      raise ValueError(f'{field}: each term must be (name, weight, options dict) with name in '
                       f'{sorted(LOSSES)}; got {term!r}.')


def weighted_sum(logits: jax.Array, labels: jax.Array, terms: Sequence, ignore_index: int,
                 class_weights: Sequence[float] | None, prefix: str,
                 distance_maps: dict[str, jax.Array] | None = None) -> tuple[jax.Array, dict]:
  """sum of weight * LOSSES[name](logits, labels, **options) over terms, and each term."""
  total, parts = jnp.float32(0.0), {}
  for name, weight, options in terms:
    extra = {}
    if name in DISTANCE_LOSSES:
      if not distance_maps:
        raise ValueError(f'loss {name!r} needs the batch fields {DISTANCE_KEYS}; the training '
                         'pipeline adds them when config.loss names a distance loss.')
      extra = distance_maps
    value = LOSSES[name](logits, labels, ignore_index, class_weights or None, **extra, **options)
    parts[f'{prefix}_{name}'] = value
    total = total + weight * value
  return total, parts


def total_loss(outputs: dict[str, Any], labels: jax.Array, loss_config: Any,
               ignore_index: int, batch: dict[str, jax.Array] | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """config.loss.main on the main logits plus config.loss.aux on each auxiliary head's, plus
  STDC's boundary loss (config.loss.detail_weights) on each detail head's; the distance losses
  read their maps from `batch`."""
  class_weights = tuple(loss_config.class_weights)
  distance_maps = {k: batch[k] for k in DISTANCE_KEYS if batch and k in batch}
  total, parts = weighted_sum(outputs['logits'], labels, loss_config.main, ignore_index,
                              class_weights, 'loss_main', distance_maps)
  for i, aux_logits in enumerate(outputs.get('aux', [])):
    aux_total, aux_parts = weighted_sum(aux_logits, labels, loss_config.aux, ignore_index,
                                        class_weights, f'loss_aux{i}', distance_maps)
    total = total + aux_total
    parts.update(aux_parts)
  bce_weight, dice_weight = loss_config.detail_weights
  for i, detail_logits in enumerate(outputs.get('detail', [])):
    value = detail_loss.detail_loss(detail_logits, labels, bce_weight, dice_weight)
    parts[f'loss_detail{i}'] = value
    total = total + value
  return total, parts
