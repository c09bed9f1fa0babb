"""Inference and the evaluation loop.

Whole-image inference (mmsegmentation's `whole` mode): the resized image, padded to a multiple
of the model's stride, goes through the model; the logits are resized bilinearly to the padded
input, cropped back to the image, and resized bilinearly to the label's original size, where the
argmax is scored. All of this, and the confusion matrix of the batch, happens inside one jitted
step over the sharded batch; the matrix is summed over batches on the device in int32 and moved
into an int64 host total before the int32 could overflow.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from semseg_jax import losses
from semseg_jax import metrics
from semseg_jax import sharding
from semseg_jax.data import pipeline

_INT32_MAX = 2**31 - 1


def resize_to_label(logits: jax.Array, image_hw: jax.Array, label_hw: jax.Array,
                    out_hw: tuple[int, int]) -> jax.Array:
  """Crops one example's logits [Hc, Wc, C] to image_hw and resizes them bilinearly
  (align_corners=False) to label_hw, placed in an [out_h, out_w, C] canvas.

  Sizes are traced values, so one compiled step serves images of any size in a canvas.
  """
  canvas_h, canvas_w = logits.shape[:2]
  # Replicate the last valid row/column outwards: resampling at the crop's edge then reads
  # only valid logits, exactly as resizing the cropped array would.
  rows = jnp.minimum(jnp.arange(canvas_h), image_hw[0] - 1)
  cols = jnp.minimum(jnp.arange(canvas_w), image_hw[1] - 1)
  cropped = logits[rows][:, cols]
  scale = label_hw.astype(jnp.float32) / image_hw.astype(jnp.float32)
  return jax.image.scale_and_translate(
      cropped, (out_hw[0], out_hw[1], logits.shape[-1]), (0, 1), scale,
      jnp.zeros(2, jnp.float32), method='linear', antialias=False)


def predict_whole(model: nn.Module, variables: Any, batch: dict[str, jax.Array]) -> jax.Array:
  """Label-resolution logits [N, Hl, Wl, C] (float32) of a padded evaluation batch."""
  outputs = model.apply(variables, batch['image'], train=False)
  logits = losses.resize_logits(outputs['logits'], batch['image'].shape[1:3])
  out_hw = batch['label'].shape[1:3]
  return jax.vmap(lambda l, i, t: resize_to_label(l, i, t, out_hw))(
      logits, batch['image_hw'], batch['label_hw'])


def make_eval_step(model: nn.Module, mesh: Mesh, data_axes: tuple[str, ...], num_classes: int,
                   ignore_index: int) -> Callable:
  """jit(variables, batch) -> (confusion int32 [C, C] replicated, predictions [N, Hl, Wl])."""
  def eval_step(variables, batch):
    pred = jnp.argmax(predict_whole(model, variables, batch), axis=-1).astype(jnp.int32)
    confusion = metrics.confusion_matrix(batch['label'], pred, num_classes, ignore_index,
                                         batch['mask'])
    return confusion, pred
  return jax.jit(eval_step, out_shardings=(sharding.replicated(mesh),
                                           sharding.batch_sharding(mesh, data_axes)))


@dataclasses.dataclass
class EvalResult:
  confusion: np.ndarray  # int64 [C, C], rows = ground truth.
  metrics: dict  # From metrics.summary_metrics.
  examples: list  # Up to num_overlays (source index, prediction at label size), this process.


def evaluate(eval_step: Callable, variables: Any, config: ml_collections.ConfigDict,
             source: Any, mesh: Mesh) -> EvalResult:
  """Evaluates `variables` on `source`; every host returns the same confusion matrix."""
  num_classes = source.num_classes
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  dataset, _ = pipeline.eval_dataset(config, source, jax.process_index(), jax.process_count())
  total = np.zeros((num_classes, num_classes), np.int64)
  running, running_pixels = None, 0
  examples = []
  for batch in dataset:
    indices = batch.pop('index')
    pixels = int(np.prod(batch['label'].shape)) * jax.process_count()
    if running is not None and running_pixels + pixels > _INT32_MAX:
      total += np.asarray(jax.device_get(running), np.int64)
      running, running_pixels = None, 0
    confusion, pred = eval_step(variables, sharding.to_global(batch, batch_sharding))
    running = confusion if running is None else running + confusion
    running_pixels += pixels
    if len(examples) < config.eval.num_overlays and np.any(indices >= 0):
      local_pred = sharding.local_rows(pred)
      for index, p, hw in zip(indices, local_pred, batch['label_hw']):
        if index >= 0 and len(examples) < config.eval.num_overlays:
          examples.append((int(index), p[:hw[0], :hw[1]]))
  if running is not None:
    total += np.asarray(jax.device_get(running), np.int64)
  return EvalResult(total, metrics.summary_metrics(total, source.class_names), examples)
