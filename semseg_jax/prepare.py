"""What happens to a config before it runs, in every mode, so that the config logged (and
written to TensorBoard) is the config that runs: every section is checked, naming the field
that cannot work; smoke runs get their generated data; the pretrained weights' preprocessing
and the class weights computed from the training labels are filled in."""

import math
import os

import ml_collections
import numpy as np
from absl import logging

from semseg_jax import convert
from semseg_jax import evaluators
from semseg_jax import losses
from semseg_jax import models
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.data import check as data_check
from semseg_jax.data import datasets
from semseg_jax.data.datasets import files
from semseg_jax.evaluators import common

CLASS_WEIGHTINGS = ('', 'median_frequency', 'enet', 'linknet', 'espnet')
# Step counts and periods: (field, smallest value that works). A period of 0 would divide by
# zero mid-run; keeping 0 checkpoints would leave nothing to resume or evaluate; a benchmark
# with no batch, steps or rounds has nothing to time.
POSITIVE_FIELDS = (('train.num_steps', 0), ('train.log_every', 1), ('train.eval_every', 1),
                   ('checkpoint.every_steps', 1), ('checkpoint.max_to_keep', 1),
                   ('benchmark.batch_size', 1), ('benchmark.steps', 1),
                   ('benchmark.eval_rounds', 1))


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, on settings that cannot work."""
  models.model_options(config.model)
  losses.check_terms(config.loss)
  train_step.check_accumulation(config)
  evaluators.check(config)
  weighting = config.loss.class_weighting
  if weighting not in CLASS_WEIGHTINGS:
    raise ValueError(f'config.loss.class_weighting={weighting!r}; expected median_frequency, '
                     "enet, linknet, espnet or ''.")
  if weighting and config.loss.class_weights:
    raise ValueError('config.loss.class_weighting and config.loss.class_weights are both set; '
                     'give one of them.')
  if config.model.pretrained and config.model.backbone_pretrained:
    raise ValueError('config.model.pretrained (whole model) and config.model.backbone_pretrained '
                     'are both set; give one of them.')
  for field, minimum in POSITIVE_FIELDS:
    section, name = field.split('.')
    value = config[section][name]
    if not _integer_at_least(value, minimum):
      raise ValueError(f'config.{field}={value!r}; expected an integer >= {minimum}.')
  pixels = config.data.max_image_pixels
  if pixels is not None and not _integer_at_least(pixels, 1):
    raise ValueError(f'config.data.max_image_pixels={pixels!r}; expected a positive integer '
                     '(pixels a file header may claim) or None (no limit).')
  crop = tuple(config.augment.crop_size)
  if len(crop) != 2 or not all(_integer_at_least(v, 1) for v in crop):
    raise ValueError(f'config.augment.crop_size={crop}; expected (height, width), two positive '
                     'integers.')
  if config.data.channel_order not in ('rgb', 'bgr'):
    raise ValueError(f'config.data.channel_order={config.data.channel_order!r}; expected rgb '
                     'or bgr.')


def _integer_at_least(value, minimum: int) -> bool:
  """An int (not a bool, which Python counts as one) of at least `minimum`."""
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_batch_sizes(config: ml_collections.ConfigDict, mode: str) -> None:
  """Every global batch the run will shard (training's, each evaluator's, prediction's) splits
  evenly over the data-parallel devices of config.mesh; fails naming the field otherwise."""
  if mode not in ('train', 'eval', 'predict'):
    return
  mesh = sharding.make_mesh(config.mesh)
  shards = math.prod(mesh.shape[axis] for axis in config.mesh.data_axes)
  batches = {'config.train.batch_size': config.train.batch_size} if mode == 'train' else {}
  if mode == 'predict':
    batches['config.eval.batch_size'] = config.eval.batch_size
  else:
    for name in config.evals:
      if common.every_steps_of(config, name) == -1:
        continue  # Never runs.
      own = config.evals[name].get('batch_size') is not None
      field = f'config.evals.{name}.batch_size' if own else 'config.eval.batch_size'
      batches[field] = common.settings_of(config, name).batch_size
  for field, batch_size in batches.items():
    if batch_size % shards:
      raise ValueError(f'{field}={batch_size} does not split over the {shards} data-parallel '
                       f'devices (config.mesh.data_axes {tuple(config.mesh.data_axes)} of '
                       f'{dict(mesh.shape)}): use a multiple of {shards}.')


def use_pretrained_preprocessing(config: ml_collections.ConfigDict) -> None:
  """Sets config.data.{mean, std, channel_order} to what the pretrained weights expect
  (config.model.pretrained_preprocessing), warning where that changes them."""
  if not config.model.pretrained_preprocessing:
    return
  for field, _ in train_state.PRETRAINED_FIELDS:
    source = config.model[field]
    expected = convert.preprocessing_of(source, f'config.model.{field}') if source else None
    if not expected:
      continue
    for key in ('mean', 'std', 'channel_order'):
      value = expected[key] if key == 'channel_order' else tuple(float(v) for v in expected[key])
      current = config.data[key] if key == 'channel_order' else tuple(
          float(v) for v in config.data[key])
      if not (value == current if key == 'channel_order' else np.allclose(value, current)):
        logging.warning('config.data.%s=%s -> %s: what the weights of config.model.%s expect '
                        '(config.model.pretrained_preprocessing=False keeps the config\'s).',
                        key, current, value, field)
        config.data[key] = value


def resolve_class_weighting(config: ml_collections.ConfigDict) -> None:
  """With config.loss.class_weighting, sets config.loss.class_weights from the pixel counts of
  the training split (read once, here, on every process alike)."""
  weighting = config.loss.class_weighting
  if not weighting:
    return
  report = data_check.check_split(config, config.data.train_split,
                                  workers=config.data.num_workers)
  if report['problems'] and not config.data.skip_bad_examples:
    raise ValueError(f'config.loss.class_weighting={weighting!r}: the training split has bad '
                     f'examples, e.g. {report["problems"][0]}')
  weights = tuple(float(w) for w in report['class_weights'][weighting])
  logging.info('Class weights (%s) from %d training labels: %s', weighting, report['examples'],
               ', '.join(f'{n}={w:.4f}' for n, w in zip(report['class_names'], weights)))
  config.loss.class_weights = weights


def write_example_tree(config: ml_collections.ConfigDict, workdir: str) -> None:
  """With config.data.example_tree, points config.data.root at a tiny tree in the dataset's
  layout under <workdir>/example_data, written there once (datasets that read no files of
  their own ignore the field)."""
  dataset = datasets.DATASETS.get(datasets.kind(config.data.name))
  if not config.data.example_tree or dataset is None or dataset.write_example_tree is None:
    return
  directory = os.path.join(os.path.abspath(workdir), 'example_data')
  done = os.path.join(directory, 'root.txt')
  if not os.path.exists(done):
    root = datasets.write_example_tree(config.data, directory)
    with open(done + '.tmp', 'w') as f:
      f.write(root)
    os.replace(done + '.tmp', done)
  with open(done) as f:
    config.data.root = f.read()
  logging.info('config.data.example_tree: reading the example tree at %s.', config.data.root)


def prepare_config(config: ml_collections.ConfigDict, mode: str, workdir: str) -> None:
  """Checks `config` and fills in what the run derives from its data and weights (in place)."""
  check_config(config)
  check_batch_sizes(config, mode)
  write_example_tree(config, workdir)
  # A bad dataset name or root fails here; so does an ignore_index that is a class or not 8-bit
  # (an index of a class would drop the class from training yet count it, IoU 0, in mIoU).
  class_names, _ = datasets.class_names_and_palette(config.data)
  files.check_ignore_index(config.data.ignore_index, len(class_names),
                           f'config.data (name {config.data.name!r})')
  use_pretrained_preprocessing(config)
  if mode == 'train':
    resolve_class_weighting(config)
