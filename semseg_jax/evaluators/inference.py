"""How the model sees an image at test time (config.eval, or an evaluator's own settings), and
the jitted evaluation step.

Each test scale's image (resized keeping its ratio, optionally aligned to a multiple, padded
to its group's canvas) goes through the model whole (mmseg's `whole` mode) or in sliding
windows (`slide`), optionally also flipped. The logits at the input's size are cropped to the
image and resized bilinearly to the label's original size. With one view (one scale, no flip)
the argmax of those logits is the prediction; with several, the softmax probabilities of all
views are averaged at the label's resolution first. All of this, and the batch's confusion
matrix (a clu metric), happens inside one jitted step over the sharded batch.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from semseg_jax import metrics
from semseg_jax import sharding
from semseg_jax.evaluators import mc_dropout
from semseg_jax.losses import common


def _bilinear_taps(valid: jax.Array, scale: jax.Array, size: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(low, high, weight of high) source entries of `size` samples of an axis's first `valid`
  entries (traced) scaled by `scale` (traced): PyTorch's bilinear interpolation with
  align_corners=False, where output i reads source position (i + 0.5) / scale - 0.5 (clamped to
  >= 0) from its two neighbours, the last valid entry repeated beyond it."""
  source = jnp.maximum((jnp.arange(size, dtype=jnp.float32) + 0.5) / scale - 0.5, 0.0)
  low = jnp.floor(source)
  weight = source - low
  low = jnp.minimum(low.astype(jnp.int32), valid - 1)
  return low, jnp.minimum(low + 1, valid - 1), weight


def resize_to_label(logits: jax.Array, image_hw: jax.Array, label_hw: jax.Array,
                    out_hw: tuple[int, int], mirrored: bool = False) -> jax.Array:
  """Crops one example's logits [Hc, Wc, C] to image_hw and resizes them bilinearly
  (align_corners=False) to label_hw, placed in an [out_h, out_w, C] canvas (beyond label_hw:
  the edge repeated). mirrored: the logits are of the horizontally flipped image, and are
  flipped back by the same gather (the same values as flip_valid first, without its pass over
  the canvas).

  Sizes are traced values, so one compiled step serves images of any size in a canvas. Each
  output pixel gathers the class vectors of its four source pixels and blends them, in one
  pass that XLA fuses: not an interpolation matrix over the canvas (at 150 classes the matrix
  products cost more than the model), nor an axis at a time (one more pass over a
  label-sized intermediate: 6 views of 150 classes at 256x512 with their softmax, 1.0 s
  against 0.71 s on a 2-core CPU).
  """
  scale = label_hw.astype(jnp.float32) / image_hw.astype(jnp.float32)
  top, bottom, below = _bilinear_taps(image_hw[0], scale[0], out_hw[0])
  left, right, beside = _bilinear_taps(image_hw[1], scale[1], out_hw[1])
  if mirrored:
    left, right = image_hw[1] - 1 - left, image_hw[1] - 1 - right
  below, beside = below[:, None, None], beside[None, :, None]

  def at(rows, columns):  # [out_h, out_w, C]
    return logits[rows[:, None], columns[None, :]]
  return ((at(top, left) * (1 - below) + at(bottom, left) * below) * (1 - beside)
          + (at(top, right) * (1 - below) + at(bottom, right) * below) * beside)


def flip_valid(x: jax.Array, widths: jax.Array) -> jax.Array:
  """Mirrors each example's first widths[i] columns of x [N, H, W, ...]; padding stays put."""
  columns = jnp.arange(x.shape[2])
  index = jnp.where(columns < widths[:, None], widths[:, None] - 1 - columns, columns)
  return jax.vmap(lambda a, i: a[:, i])(x, index)


def infer_whole(model: nn.Module, variables: Any, images: jax.Array) -> jax.Array:
  """float32 logits [N, H, W, C] of padded images [N, H, W, 3], resized to the input.

  A model that also returns an 'uncertainty' map (Monte-Carlo dropout) gets it as one more
  channel, C + 1, so that windows, flips and resizing treat it like the logits.
  """
  outputs = model.apply(variables, images, train=False)
  logits = outputs['logits']
  if 'uncertainty' in outputs:
    logits = jnp.concatenate([logits, outputs['uncertainty'][..., None]], axis=-1)
  return common.resize_logits(logits, images.shape[1:3])


@functools.partial(jax.jit, static_argnums=0)
def _view_logits(model: nn.Module, variables: Any, images: jax.Array) -> jax.Array:
  """infer_whole under a jit of its own, for the views of an evaluation. Inside the evaluation
  step it is inlined (the same program), but jax traces the model once per model and input
  shape and reuses that trace: for every flip of a scale, every window batch (and the shape
  query before them), and every later trace of the step (another batch shape, the
  evaluation's last batch). Tracing a model is the costly part of building the step: without
  this, a slide + flip evaluation at two scales traced the model 8 times per step."""
  return infer_whole(model, variables, images)


def _num_windows(size, window: int, stride: int):
  """mmseg's window count along one side, of an int or an int array."""
  if isinstance(size, int):
    return max(size - window + stride - 1, 0) // stride + 1
  return jnp.maximum(size - window + stride - 1, 0) // stride + 1


def slide_plan(canvas_hw: tuple[int, int], crop_size: tuple[int, int],
               stride: tuple[int, int], windows_per_step: int
               ) -> tuple[tuple[int, int], int, int, int, int]:
  """How infer_slide covers a canvas: (window (h, w), windows per row of the grid, windows in
  all, windows per model call, model calls)."""
  window = (min(crop_size[0], canvas_hw[0]), min(crop_size[1], canvas_hw[1]))
  grid_w = _num_windows(canvas_hw[1], window[1], stride[1])
  num_windows = _num_windows(canvas_hw[0], window[0], stride[0]) * grid_w
  per_step = max(1, min(windows_per_step, num_windows))
  return window, grid_w, num_windows, per_step, -(-num_windows // per_step)


def infer_slide(model: nn.Module, variables: Any, images: jax.Array, image_hw: jax.Array,
                crop_size: tuple[int, int], stride: tuple[int, int],
                windows_per_step: int) -> jax.Array:
  """Sliding-window logits [N, H, W, C] (mmseg's slide mode) of padded images [N, H, W, 3].

  Window (a, b) of an image of size (h, w) ends at min(a * stride + crop, h) and starts crop
  before that (at 0 at least); each window's logits are resized to the window and the sum over
  windows is divided by the number of windows covering each pixel. The window grid is laid
  over the canvas; windows beyond an image's own grid count nowhere. windows_per_step windows
  of every image go through the model together, in a scan, so memory stays bounded whatever
  the image size. An image smaller than the window in a side is seen whole in that side
  (with its canvas padding, as in whole mode).
  """
  n, canvas_h, canvas_w, _ = images.shape
  (win_h, win_w), grid_w, num_windows, per_step, num_steps = slide_plan(
      (canvas_h, canvas_w), crop_size, stride, windows_per_step)
  window_ids = jnp.arange(num_steps * per_step).reshape(num_steps, per_step)
  rows_i = _num_windows(image_hw[:, 0], win_h, stride[0])[:, None]  # [N, 1]
  cols_i = _num_windows(image_hw[:, 1], win_w, stride[1])[:, None]

  def start(index, size, window, step):
    return jnp.maximum(jnp.minimum(index * step + window, size) - window, 0)

  def add_window(canvas, window, y, x):
    zero = jnp.zeros((), y.dtype)
    current = jax.lax.dynamic_slice(canvas, (y, x, zero), window.shape)
    return jax.lax.dynamic_update_slice(canvas, current + window, (y, x, zero))

  def body(carry, ids):
    sums, counts = carry
    a, b = ids // grid_w, ids % grid_w  # [k]
    y = start(a[None], image_hw[:, :1], win_h, stride[0])  # [N, k]
    x = start(b[None], image_hw[:, 1:], win_w, stride[1])
    used = ((ids[None] < num_windows) & (a[None] < rows_i) & (b[None] < cols_i))
    crops = jax.vmap(jax.vmap(
        lambda image, y0, x0: jax.lax.dynamic_slice(
            image, (y0, x0, jnp.zeros((), y0.dtype)), (win_h, win_w, 3)),
        in_axes=(None, 0, 0)))(images, y, x)  # [N, k, win_h, win_w, 3]
    logits = _view_logits(model, variables, crops.reshape(n * per_step, win_h, win_w, 3))
    logits = logits.reshape(n, per_step, win_h, win_w, -1)
    weight = used.astype(jnp.float32)
    for t in range(per_step):
      sums = jax.vmap(add_window)(sums, logits[:, t] * weight[:, t, None, None, None],
                                  y[:, t], x[:, t])
      counts = jax.vmap(add_window)(counts, jnp.broadcast_to(
          weight[:, t, None, None, None], (n, win_h, win_w, 1)), y[:, t], x[:, t])
    return (sums, counts), None

  num_classes = jax.eval_shape(functools.partial(_view_logits, model), variables,
                               jax.ShapeDtypeStruct((n * per_step, win_h, win_w, 3),
                                                    images.dtype)).shape[-1]  # The body's trace.
  init = (jnp.zeros((n, canvas_h, canvas_w, num_classes), jnp.float32),
          jnp.zeros((n, canvas_h, canvas_w, 1), jnp.float32))
  (sums, counts), _ = jax.lax.scan(body, init, window_ids)
  return sums / jnp.maximum(counts, 1.0)


def predict_scores(model: nn.Module, variables: Any, batch: dict[str, Any],
                   eval_config: ml_collections.ConfigDict) -> jax.Array:
  """Label-resolution scores [N, Hl, Wl, C] of an evaluation batch; argmax is the prediction.

  One view (single scale, no flip): the logits. Several views (config.eval.scales, flip): the
  softmax probabilities of every view, each resized to the label, averaged (mmseg's TTA).
  With Monte-Carlo dropout (config.eval.mc_dropout_samples), see `predict_with_uncertainty`.
  """
  return predict_with_uncertainty(model, variables, batch, eval_config)[0]


def predict_with_uncertainty(model: Any, variables: Any, batch: dict[str, Any],
                             eval_config: ml_collections.ConfigDict
                             ) -> tuple[jax.Array, jax.Array | None]:
  """(scores as predict_scores, per-pixel uncertainty [N, Hl, Wl] or None).

  With config.eval.mc_dropout_samples = S > 0 the model runs S times per view with dropout on
  (evaluators.mc_dropout): its scores are the log of the mean probabilities, and the uncertainty,
  the samples' variance averaged over classes, is averaged over the views like the scores.
  """
  if eval_config.mc_dropout_samples > 0 and not isinstance(model, mc_dropout.MonteCarloDropout):
    model = mc_dropout.MonteCarloDropout(model, eval_config.mc_dropout_samples)
  with_uncertainty = isinstance(model, mc_dropout.MonteCarloDropout)
  out_hw = batch['label'].shape[1:3]
  flips = (False, True) if eval_config.flip else (False,)
  views = [(s, f) for s in range(len(batch['images'])) for f in flips]
  total, total_uncertainty = None, None
  for scale, flip in views:
    images, image_hw = batch['images'][scale], batch['image_hws'][scale]
    if flip:
      images = flip_valid(images, image_hw[:, 1])
    if eval_config.mode == 'whole':
      logits = _view_logits(model, variables, images)
    else:
      logits = infer_slide(model, variables, images, image_hw, tuple(eval_config.crop_size),
                           tuple(eval_config.stride), eval_config.windows_per_step)
    at_label = jax.vmap(lambda l, i, t: resize_to_label(l, i, t, out_hw, flip))(
        logits, image_hw, batch['label_hw'])
    uncertainty = None
    if with_uncertainty:
      at_label, uncertainty = at_label[..., :-1], at_label[..., -1]
      total_uncertainty = uncertainty if total_uncertainty is None else (
          total_uncertainty + uncertainty)
    if len(views) == 1:
      return at_label, uncertainty
    probs = jax.nn.softmax(at_label, axis=-1)
    total = probs if total is None else total + probs
  if with_uncertainty:
    total_uncertainty = total_uncertainty / len(views)
  return total / len(views), total_uncertainty


EVAL_MODES = ('whole', 'slide')


def check_eval_config(eval_config: ml_collections.ConfigDict, field: str = 'config.eval') -> None:
  """Fails naming the field (of `field`: config.eval, or an evaluator's entry) that cannot
  work."""
  if eval_config.mode not in EVAL_MODES:
    raise ValueError(f'{field}.mode={eval_config.mode!r}; expected one of {EVAL_MODES}.')
  for name in ('crop_size', 'stride'):
    value = tuple(eval_config[name])
    if len(value) != 2 or min(value) < 1:
      raise ValueError(f'{field}.{name}={value}; expected two positive ints (h, w).')
  if eval_config.windows_per_step < 1:
    raise ValueError(f'{field}.windows_per_step={eval_config.windows_per_step}; expected >= 1.')
  if any(r <= 0 for r in eval_config.scales):
    raise ValueError(f'{field}.scales={tuple(eval_config.scales)}; ratios must be > 0.')
  if eval_config.align_multiple < 0 or eval_config.pad_multiple < 1:
    raise ValueError(f'{field}.align_multiple must be >= 0 and {field}.pad_multiple >= 1.')
  if eval_config.mc_dropout_samples < 0:
    raise ValueError(f'{field}.mc_dropout_samples={eval_config.mc_dropout_samples}; '
                     'expected >= 0.')
  if eval_config.batch_size < 1:
    raise ValueError(f'{field}.batch_size={eval_config.batch_size}; expected >= 1.')


def make_eval_step(model: nn.Module, eval_config: ml_collections.ConfigDict, mesh: Mesh,
                   data_axes: tuple[str, ...], num_classes: int, ignore_index: int) -> Callable:
  """jit(variables, batch) -> (ConfusionMatrix replicated, predictions [N, Hl, Wl] int32), or
  with Monte-Carlo dropout (config.eval.mc_dropout_samples > 0) -> (ConfusionMatrix,
  {'pred': predictions, 'uncertainty': [N, Hl, Wl] float32})."""
  check_eval_config(eval_config)
  if eval_config.mc_dropout_samples > 0 and not hasattr(model, 'mc_dropout'):
    raise ValueError(f'config.eval.mc_dropout_samples={eval_config.mc_dropout_samples}, but '
                     f'{type(model).__name__} has no Monte-Carlo dropout (only models with an '
                     '`mc_dropout` field, e.g. segnet:bayesian); set it to 0.')

  def eval_step(variables, batch):
    scores, uncertainty = predict_with_uncertainty(model, variables, batch, eval_config)
    pred = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    confusion = metrics.ConfusionMatrix.from_model_output(
        labels=batch['label'], preds=pred, mask=batch['mask'], num_classes=num_classes,
        ignore_index=ignore_index)
    if uncertainty is None:
      return confusion, pred
    return confusion, {'pred': pred, 'uncertainty': uncertainty}
  rows = sharding.batch_sharding(mesh, data_axes)
  outputs = {'pred': rows, 'uncertainty': rows} if eval_config.mc_dropout_samples > 0 else rows
  return jax.jit(eval_step, out_shardings=(sharding.replicated(mesh), outputs))

