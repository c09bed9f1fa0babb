"""Losses, configured per model output.

A model returns a dict of outputs: `logits`, and where it has them `aux` (a list: one entry per
auxiliary head) and `detail` (a list of boundary logits, STDC). `config.loss.<output>` lists the
(name, weight, options) terms trained on that output, on each array of a list output alike, so
no model's output is special-cased here: a model with a new kind of output gets a new
`config.loss` field of that name (and an entry in OUTPUTS). Names are keys of LOSSES; every loss
is `fn(logits, labels, ignore_index, class_weights, **options) -> scalar` and resizes the logits
to the labels itself (`common`).

The modules: `common` (resize, prepare, masked and class means), `pixel` (cross-entropy, OHEM,
focal), `region` (Dice, IoU, Tversky, Lovasz... over sets of pixels), `distance` (losses on
ground-truth boundary-distance maps, which the input pipeline adds to the batch), `detail`
(STDC's boundary-detail loss).
"""

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from semseg_jax.losses import common
from semseg_jax.losses import detail
from semseg_jax.losses import distance
from semseg_jax.losses import pixel
from semseg_jax.losses import region

resize_logits = common.resize_logits

# The model outputs that take loss terms; config.loss.<output> holds each one's terms.
OUTPUTS = ('logits', 'aux', 'detail')

# How gradient accumulation splits a term over micro-batches (train.grad_accum_steps):
LABELLED_SHARE = 'labelled_share'  # A mean over the batch's labelled pixels: each micro-batch
                                   # weighs its share of them.
EQUAL_SHARE = 'equal_share'  # A mean over images, groups of images or all pixels: each
                             # micro-batch weighs 1 / grad_accum_steps.
# None: computed over the whole batch at once; a micro-batch's value is another objective.

DISTANCE_KEYS = ('distance_classes', 'boundary_distance')


@dataclasses.dataclass(frozen=True)
class Loss:
  fn: Callable[..., jax.Array]
  # (options, images per micro-batch) -> LABELLED_SHARE, EQUAL_SHARE or None.
  split: Callable[[dict, int], str | None]
  batch_fields: tuple[str, ...] = ()  # Batch arrays the loss reads (keyword arguments).


def _labelled(options: dict, micro_batch: int) -> str:
  del options, micro_batch
  return LABELLED_SHARE


def _equal(options: dict, micro_batch: int) -> str:
  del options, micro_batch
  return EQUAL_SHARE


def _per_image_or_batch(options: dict, micro_batch: int) -> str | None:
  del micro_batch
  return EQUAL_SHARE if options.get('per_image', False) else None


def _cross_entropy_split(options: dict, micro_batch: int) -> str | None:
  """By pixels for the two pixel averages; a weighted mean's denominator is a sum of class
  weights, which no share of the batch gives (None)."""
  del micro_batch
  return {'all': EQUAL_SHARE, 'valid': LABELLED_SHARE}.get(options.get('average', 'valid'))


def _ohem_split(options: dict, micro_batch: int) -> str | None:
  group = options.get('images_per_group', 0)
  return EQUAL_SHARE if group and micro_batch % group == 0 else None


LOSSES: dict[str, Loss] = {
    'cross_entropy': Loss(pixel.cross_entropy, _cross_entropy_split),
    'ohem_cross_entropy': Loss(pixel.ohem_cross_entropy, _ohem_split),
    'focal': Loss(pixel.focal_loss, _labelled),
    'dice': Loss(region.dice_loss, _per_image_or_batch),
    'generalized_dice': Loss(region.generalized_dice_loss, _per_image_or_batch),
    'iou': Loss(region.iou_loss, _per_image_or_batch),
    'tversky': Loss(region.tversky_loss, _per_image_or_batch),
    'focal_tversky': Loss(region.focal_tversky_loss, _per_image_or_batch),
    'lovasz_softmax': Loss(region.lovasz_softmax_loss, _per_image_or_batch),
    'exp_log': Loss(region.exp_log_loss, _per_image_or_batch),
    'combo': Loss(region.combo_loss, _per_image_or_batch),
    'dpce': Loss(distance.dpce_loss, _labelled, DISTANCE_KEYS),
    'boundary': Loss(distance.boundary_loss, _labelled, DISTANCE_KEYS),
    'hausdorff_dt': Loss(distance.hausdorff_dt_loss, _labelled, DISTANCE_KEYS),
    'detail_bce': Loss(detail.detail_bce, _equal),
    'detail_dice': Loss(detail.detail_dice, _equal),
}


def terms_of(loss_config: Any) -> dict[str, tuple]:
  """{output: its terms} from config.loss."""
  return {output: tuple(loss_config[output]) for output in OUTPUTS}


def check_terms(loss_config: Any) -> None:
  """Fails naming the config.loss field unless each output's terms are (known name, weight,
  options dict)."""
  for output, terms in terms_of(loss_config).items():
    for term in terms:
      if (not isinstance(term, (tuple, list)) or len(term) != 3 or term[0] not in LOSSES
          or not isinstance(term[2], dict)):
        raise ValueError(f'config.loss.{output}: each term must be (name, weight, options dict) '
                         f'with name in {sorted(LOSSES)}; got {term!r}.')


def needs_distance_maps(loss_config: Any) -> bool:
  """Whether any term reads the ground truth's boundary-distance maps."""
  return any(LOSSES[term[0]].batch_fields for terms in terms_of(loss_config).values()
             for term in terms)


def accumulation_unit(loss_config: Any) -> int:
  """Images that must stay in one micro-batch under gradient accumulation: the lcm of the OHEM
  terms' images_per_group (1 if none)."""
  groups = [term[2].get('images_per_group', 0) for terms in terms_of(loss_config).values()
            for term in terms if term[0] == 'ohem_cross_entropy']
  return math.lcm(1, *[g for g in groups if g])


def inexact_terms(loss_config: Any, micro_batch: int) -> list[str]:
  """'config.loss.<output>: (term)' for each term that gradient accumulation cannot split
  exactly into micro-batches of `micro_batch` images."""
  return [f'config.loss.{output}: {term!r}' for output, terms in terms_of(loss_config).items()
          for term in terms if LOSSES[term[0]].split(term[2], micro_batch) is None]


def _arrays(value: Any) -> list[tuple[str, jax.Array]]:
  """[(suffix, array)]: '' for one array, '0', '1'... for the entries of a list output."""
  if isinstance(value, (list, tuple)):
    return [(str(i), v) for i, v in enumerate(value)]
  return [('', value)]


def total_loss(outputs: dict[str, Any], batch: dict[str, jax.Array], loss_config: Any,
               ignore_index: int, shares: dict[str, jax.Array] | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """sum over the model's outputs and their config.loss terms of weight x term, and each term
  as 'loss_<output><index>_<name>'.

  `batch` holds 'label' and whatever fields the terms read. With gradient accumulation,
  `shares` maps each split kind to this micro-batch's share and every term is scaled by its
  kind's share (terms that cannot be split use EQUAL_SHARE), so that the sum over micro-batches
  is the batch's loss.
  """
  labels = batch['label']
  class_weights = tuple(loss_config.class_weights) or None
  micro_batch = labels.shape[0]
  total, parts = jnp.float32(0.0), {}
  unknown = sorted(set(outputs) - set(OUTPUTS))
  if unknown:
    raise ValueError(f'The model returns {unknown}, which no config.loss field trains; known '
                     f'outputs: {OUTPUTS}.')
  for output in (o for o in OUTPUTS if o in outputs):
    for suffix, array in _arrays(outputs[output]):
      for name, weight, options in loss_config[output]:
        loss = LOSSES[name]
        missing = [k for k in loss.batch_fields if k not in batch]
        if missing:
          raise ValueError(f'loss {name!r} needs the batch fields {missing}; the training '
                           'pipeline adds them when config.loss names a distance loss.')
        extra = {k: batch[k] for k in loss.batch_fields}
        value_ = loss.fn(array, labels, ignore_index, class_weights, **extra, **options)
        if shares is not None:
          value_ = shares[loss.split(options, micro_batch) or EQUAL_SHARE] * value_
        parts[f'loss_{output}{suffix}_{name}'] = value_
        total = total + weight * value_
  return total, parts

