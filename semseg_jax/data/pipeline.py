"""Input pipelines (grain): host-local batches of training crops and evaluation images.

Training: source -> per-epoch shuffle (config seed) -> repeat -> augment (random per example,
seeded by config seed and the example's position in the global stream) -> this process's share
-> batch. Global batch k is stream positions [k * B, (k + 1) * B) in order whatever the number
of hosts (process p of P reads its contiguous B / P of them, see ProcessShare), and every
example can be regenerated from (seed, position) alone.

Evaluation: every image is resized (keep ratio), normalised and padded to a canvas that is a
multiple of `config.eval.pad_multiple`; images with the same canvas form a group, and each group
is padded with empty examples to a multiple of the global batch, so every batch has one shape,
every host runs the same number of steps, and padded pixels and examples are masked out.
"""

import functools
import json
import math
import os
import threading
import time
from typing import Any, Sequence

from absl import logging
import cv2
import grain
import ml_collections
import numpy as np

from semseg_jax import losses
from semseg_jax.data import distance_maps
from semseg_jax.data import transforms
from semseg_jax.data.datasets import files

# One OpenCV thread per process: parallelism comes from grain's threads and worker processes,
# which would otherwise each start a thread per core.
cv2.setNumThreads(1)

# (source index or -1 for padding, label canvas (h, w), image canvas (h, w) per test scale)
EvalEntry = tuple[int, tuple[int, int], tuple[tuple[int, int], ...]]


class TrainPreprocess(grain.transforms.RandomMap):
  """mmsegmentation's training pipeline on one example: resize and crop (resampling only the
  pixels the crop keeps), flip, photometric, normalise, pad to the crop with the ignore label;
  then, when distance_max_classes is set,
  the exact boundary-distance maps of the final label (for the distance-map losses)."""

  def __init__(self, augment: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
               distance_max_classes: int | None = None):
    self.resize_scale = tuple(augment.resize_scale)
    self.ratio_range = tuple(augment.ratio_range)
    self.crop_size = tuple(augment.crop_size)
    self.cat_max_ratio = float(augment.cat_max_ratio)
    self.flip_prob = float(augment.flip_prob)
    self.photometric = bool(augment.photometric)
    self.mean, self.std = tuple(data.mean), tuple(data.std)
    self.channel_order = data.channel_order
    self.ignore_index = int(data.ignore_index)
    self.distance_max_classes = distance_max_classes

  def random_map(self, example_in: dict, rng: np.random.Generator) -> dict:
    image, label = transforms.random_resize_crop(
        example_in['image'], example_in['label'], rng, self.resize_scale, self.ratio_range,
        self.crop_size, self.cat_max_ratio, self.ignore_index)
    image, label = transforms.random_flip(image, label, rng, self.flip_prob)
    if self.photometric:
      image = transforms.photometric_distortion(image, rng)
    image = transforms.normalize(image, self.mean, self.std, self.channel_order)
    image, label = transforms.pad_to(image, label, self.crop_size, self.ignore_index)
    example = {'image': image, 'label': label.astype(np.int32)}
    if 'skipped' in example_in:
      example['skipped'] = example_in['skipped']
    if self.distance_max_classes:
      example['distance_classes'], example['boundary_distance'] = (
          distance_maps.boundary_distance_maps(label, self.distance_max_classes,
                                               self.ignore_index))
    return example


class SkipBadExamples:
  """A source whose bad examples (files.DataError) are replaced by the next readable one in
  file order; each item carries 'skipped', the number of bad examples it replaces. With
  `max_consecutive` bad examples in a row it gives up, raising the last error."""

  def __init__(self, source: Any, max_consecutive: int = 100):
    self.source = source
    self.max_consecutive = max(1, min(int(max_consecutive), len(source)))

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    n = len(self.source)
    for skipped in range(self.max_consecutive):
      try:
        example = self.source[(int(index) + skipped) % n]
      except files.DataError as e:
        logging.warning('Skipping a bad example (config.data.skip_bad_examples): %s', e)
        error = e
        continue
      return {**example, 'skipped': np.int32(skipped)}
    raise files.DataError(f'{self.max_consecutive} consecutive examples are bad (from index '
                          f'{index}); the last: {error}')


class BadExampleCounter:
  """Counts the examples skipped in this process's batches ('skipped') and stops the run
  once more than max_fraction of them were bad: of the split's share of this process until
  a whole epoch has been read, of all examples read after that."""

  def __init__(self, split_size: int, process_count: int, max_fraction: float, split: str):
    self.share = max(1, split_size // max(1, process_count))
    self.max_fraction, self.split = float(max_fraction), split
    self.read = self.skipped = 0

  def update(self, skipped: np.ndarray) -> None:
    examples, skipped = int(np.size(skipped)), int(np.sum(skipped))
    self.read += examples + skipped
    if not skipped:
      return
    self.skipped += skipped
    fraction = self.skipped / max(self.read, self.share)
    logging.warning('Split %s: skipped %d bad example(s) so far (%.2f%%; limit %.2f%%, '
                    'config.data.max_bad_fraction).', self.split, self.skipped, 100 * fraction,
                    100 * self.max_fraction)
    if fraction > self.max_fraction:
      raise files.DataError(f'Split {self.split}: {self.skipped} bad examples skipped, '
                            f'{100 * fraction:.2f}% of those read, more than '
                            f'config.data.max_bad_fraction={self.max_fraction}; the worker '
                            f'logs name the files.')


class ProcessShare(grain.MapDataset):
  """This process's rows of every global batch: of global batch k (stream positions
  [k * B, (k + 1) * B)), process p of P takes the contiguous positions
  [k * B + p * b, k * B + (p + 1) * b) with b = B / P. The processes' local batches, placed
  in process order along the mesh's data axis, form the one-process batch row for row (row
  order matters: dropout and stochastic depth draw per row)."""

  def __init__(self, parent: grain.MapDataset, process_index: int, process_count: int,
               local_batch: int):
    super().__init__(parent)
    self._p, self._count, self._local = process_index, process_count, local_batch
    self._length = len(parent) // process_count

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, row = divmod(int(index), self._local)
    return self._parent[(batch * self._count + self._p) * self._local + row]

  def __str__(self) -> str:
    return f'ProcessShare[{self._p} of {self._count}, {self._local} rows]'


def _local_batch_size(global_batch: int, process_count: int, field: str) -> int:
  if global_batch % process_count:
    raise ValueError(f'{field}={global_batch} must be divisible by the number of processes '
                     f'({process_count}).')
  return global_batch // process_count


def _iter_dataset(ds: grain.MapDataset, data: ml_collections.ConfigDict) -> grain.IterDataset:
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=data.prefetch_batches,
                                            prefetch_buffer_size=data.prefetch_batches))
  if data.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers,
                                                     per_worker_buffer_size=1),
                        worker_init_fn=functools.partial(exit_with_parent, os.getpid()))
  return it


PARENT_POLL_SECONDS = 0.5


def exit_with_parent(parent: int, worker_index: int, worker_count: int) -> None:
  """grain worker init: the worker process exits once `parent` (the process that started it) is
  gone.

  grain stops its workers when the training process shuts down, but a SIGKILLed (or crashed)
  one tells them nothing: a worker blocked on its full output queue would wait forever, holding
  its memory and shared-memory buffers (and so keeping multiprocessing's resource tracker
  alive). A daemon thread notices the new parent (the orphan's reaper) within
  PARENT_POLL_SECONDS and ends the process; the tracker then frees what the workers left. The
  parent's pid is taken before the worker starts: one still importing when its parent died has
  already been handed to the reaper.
  """
  del worker_index, worker_count

  def watch() -> None:
    while os.getppid() == parent:
      time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name='exit_with_parent', daemon=True).start()


class TrainBatches:
  """The endless stream of training batches, resumable under any worker count.

  Batch k is a pure function of (seed, k), so the iterator's state is just the number of
  batches read; restoring it rebuilds the grain pipeline from that batch on. (grain's own
  iterator states differ between in-process and multi-process pipelines.) Follows the
  interface of grain's orbax checkpoint handler: get_state / set_state as bytes, and
  start_prefetch.
  """

  def __init__(self, batches: grain.MapDataset, data: ml_collections.ConfigDict):
    self._batches, self._data = batches, data
    self._next_batch, self._iterator = 0, None

  def __iter__(self) -> 'TrainBatches':
    return self

  def __next__(self) -> dict:
    if self._iterator is None:
      self.start_prefetch()
    batch = next(self._iterator)
    self._next_batch += 1
    return batch

  def start_prefetch(self) -> None:
    self._iterator = iter(_iter_dataset(self._batches[self._next_batch:], self._data))

  def get_state(self) -> bytes:
    return json.dumps({'next_batch': self._next_batch}).encode()

  def set_state(self, state: bytes) -> None:
    self._next_batch = int(json.loads(state)['next_batch'])
    self._iterator = None


def train_dataset(config: ml_collections.ConfigDict, source: Any, process_index: int = 0,
                  process_count: int = 1) -> TrainBatches:
  """Endless host-local training batches {'image': f32 [b, h, w, 3], 'label': i32 [b, h, w]},
  plus 'distance_classes' i32 [b, K] and 'boundary_distance' f32 [b, h, w, K] when a
  configured loss needs them (K = config.loss.distance_max_classes, or all classes), and
  'skipped' i32 [b] (bad examples each one replaces) with config.data.skip_bad_examples."""
  local_batch = _local_batch_size(config.train.batch_size, process_count,
                                  'config.train.batch_size')
  distance_max_classes = None
  if losses.needs_distance_maps(config.loss):
    distance_max_classes = config.loss.distance_max_classes or source.num_classes
  if config.data.skip_bad_examples:
    source = SkipBadExamples(source)
  ds = grain.MapDataset.source(source).shuffle(seed=config.seed).repeat(None)
  ds = ds.random_map(TrainPreprocess(config.augment, config.data, distance_max_classes),
                     seed=config.seed + 1)
  ds = ProcessShare(ds, process_index, process_count, local_batch)
  return TrainBatches(ds.batch(local_batch, drop_remainder=True), config.data)


def round_up(x: int, multiple: int) -> int:
  return int(math.ceil(x / multiple) * multiple)


def eval_scales(eval_config: ml_collections.ConfigDict) -> tuple[float, ...]:
  """The test-time scale ratios: config.eval.scales, or (1.0,) for single-scale."""
  return tuple(float(r) for r in eval_config.scales) or (1.0,)


def eval_input_size(image_hw: Sequence[int], resize_scale: Sequence[int], ratio: float = 1.0,
                    align_multiple: int = 0) -> tuple[int, int]:
  """(h, w) the model sees for an image of size image_hw at one test scale.

  With a resize_scale (long, short) the image is rescaled, keeping its ratio, to fit within
  (int(long * ratio), int(short * ratio)) (mmseg 0.x MultiScaleFlipAug); without one it is
  scaled by ratio. align_multiple > 0 then resizes each side up to a multiple of it (SegFormer's
  AlignedResize).
  """
  h, w = int(image_hw[0]), int(image_hw[1])
  if resize_scale:
    h, w = transforms.rescale_size((h, w), tuple(int(s * ratio) for s in resize_scale))
  elif ratio != 1.0:
    h, w = int(h * ratio + 0.5), int(w * ratio + 0.5)
  if align_multiple:
    h, w = round_up(h, align_multiple), round_up(w, align_multiple)
  return h, w


def eval_view_sizes(image_hw: Sequence[int],
                    eval_config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
  """eval_input_size at every test scale."""
  return [eval_input_size(image_hw, eval_config.resize_scale, ratio, eval_config.align_multiple)
          for ratio in eval_scales(eval_config)]


def eval_plan(source: Any, eval_config: ml_collections.ConfigDict, global_batch: int,
              skip_bad_examples: bool = False) -> list[EvalEntry]:
  """Orders the evaluation examples into same-canvas groups padded to whole global batches.

  An entry is (source index or -1 for padding, label canvas (h, w), the canvas (h, w) at each
  test scale); canvases are multiples of eval_config.pad_multiple. With skip_bad_examples an
  example whose size cannot be read joins the first group (its loading then fails and counts
  it as skipped); otherwise its DataError stops the plan.
  """
  multiple = eval_config.pad_multiple
  groups: dict[tuple, list[tuple[int, tuple[int, int]]]] = {}
  unreadable = []
  for index in range(len(source)):
    try:
      label_hw = source.image_size(index)
    except files.DataError:
      if not skip_bad_examples:
        raise
      unreadable.append(index)
      continue
    canvases = tuple((round_up(h, multiple), round_up(w, multiple))
                     for h, w in eval_view_sizes(label_hw, eval_config))
    groups.setdefault(canvases, []).append((index, label_hw))
  if unreadable:  # Planned into a group; loading fails again and counts them as skipped.
    if not groups:
      raise files.DataError(f'No image header of the {len(source)} examples can be read.')
    groups[min(groups)] += [(index, (0, 0)) for index in unreadable]
  plan = []
  for canvases in sorted(groups):
    members = groups[canvases]
    label_canvas = (round_up(max(hw[0] for _, hw in members), multiple),
                    round_up(max(hw[1] for _, hw in members), multiple))
    indices = [index for index, _ in members]
    indices += [-1] * (-len(indices) % global_batch)
    plan += [(index, label_canvas, canvases) for index in indices]
  return plan


class EvalPreprocess(grain.transforms.Map):
  """Loads one planned example: at each test scale the resized, normalised image padded to its
  canvas ('images', 'image_hws'); the label at its original size, padded with the ignore
  label; and a mask of the pixels that count. With config.data.skip_bad_examples a bad
  example becomes a padding example counting nowhere, with 'skipped' = 1."""

  def __init__(self, source: Any, eval_config: ml_collections.ConfigDict,
               data: ml_collections.ConfigDict):
    self.source = source
    self.eval_config = eval_config
    self.mean, self.std = tuple(data.mean), tuple(data.std)
    self.channel_order = data.channel_order
    self.ignore_index = int(data.ignore_index)
    self.skip_bad_examples = bool(data.skip_bad_examples)

  def _padding(self, entry: EvalEntry) -> dict:
    """An example that counts nowhere, shaped like the entry's group."""
    _, (label_h, label_w), canvases = entry
    return {'images': [np.zeros((h, w, 3), np.float32) for h, w in canvases],
            'image_hws': [np.array([h, w], np.int32) for h, w in canvases],
            'label': np.full((label_h, label_w), self.ignore_index, np.int32),
            'mask': np.zeros((label_h, label_w), bool),
            'label_hw': np.array([label_h, label_w], np.int32),
            'index': np.int32(-1)}

  def map(self, entry: EvalEntry) -> dict:
    if not self.skip_bad_examples:
      return self._load(entry)
    try:
      return {**self._load(entry), 'skipped': np.int32(0)}
    except files.DataError as e:
      logging.warning('Skipping a bad example (config.data.skip_bad_examples): %s', e)
      return {**self._padding(entry), 'skipped': np.int32(1)}

  def _load(self, entry: EvalEntry) -> dict:
    index, (label_h, label_w), canvases = entry
    if index < 0:
      return self._padding(entry)
    example = self.source[index]
    image, label = example['image'], example['label']
    label_hw = label.shape
    if image.shape[:2] != label_hw or label_hw[0] > label_h or label_hw[1] > label_w:
      raise files.DataError(f'{self.source.name(index)}: decoded size {image.shape[:2]} (label '
                            f'{label_hw}) differs from the size read from its header; the file '
                            f'may be corrupt.')
    images, image_hws = [], []
    for (canvas_h, canvas_w), hw in zip(canvases, eval_view_sizes(label_hw, self.eval_config)):
      view = image if hw == label_hw else transforms.resize(image, None, hw)[0]
      view = transforms.normalize(view, self.mean, self.std, self.channel_order)
      images.append(np.pad(view, ((0, canvas_h - hw[0]), (0, canvas_w - hw[1]), (0, 0))))
      image_hws.append(np.array(hw, np.int32))
    label = np.pad(label.astype(np.int32), ((0, label_h - label_hw[0]), (0, label_w - label_hw[1])),
                   constant_values=self.ignore_index)
    mask = np.zeros((label_h, label_w), bool)
    mask[:label_hw[0], :label_hw[1]] = True
    return {'images': images, 'image_hws': image_hws, 'label': label, 'mask': mask,
            'label_hw': np.array(label_hw, np.int32), 'index': np.int32(index)}


def eval_dataset(eval_config: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                 source: Any, process_index: int = 0,
                 process_count: int = 1) -> tuple[grain.IterDataset, int]:
  """Host-local evaluation batches of `source` with the settings `eval_config` (config.eval or
  an evaluator's) and the number of steps (the same on every host)."""
  global_batch = eval_config.batch_size
  local_batch = _local_batch_size(global_batch, process_count, 'the evaluation batch_size')
  plan = eval_plan(source, eval_config, global_batch, data.skip_bad_examples)
  ds = grain.MapDataset.source(plan)[process_index::process_count]
  ds = ds.map(EvalPreprocess(source, eval_config, data)).batch(local_batch)
  return _iter_dataset(ds, data), len(plan) // global_batch
