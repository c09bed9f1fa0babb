"""What every evaluator shares: the evaluation settings of an entry of config.evals, and the
loop that runs the jitted evaluation step over every image of a source.

The loop sums the batches' confusion matrices on the device in int32 and moves them into an
int64 host total before int32 could overflow; every host ends with the same matrix.
"""

import dataclasses
import json
import os
from typing import Any, Callable

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
from jax.sharding import Mesh

from semseg_jax import checkpointing
from semseg_jax import metrics
from semseg_jax import sharding
from semseg_jax.data import pipeline
from semseg_jax.data.datasets import files

_INT32_MAX = 2**31 - 1

# Fields of a config.evals entry besides the config.eval fields it may override.
ENTRY_FIELDS = ('type', 'split', 'every_steps', 'output_dir')


def append_record(workdir: str, record: dict) -> None:
  """Appends `record` as one line of <workdir>/metrics.jsonl (on a line of its own even after a
  line that a kill cut short)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'metrics.jsonl')
  full = checkpointing.storage_full_named(
      path, f'the {record.get("evaluator")} record of step {record.get("step")} could not be '
      'appended', os.path.join(workdir, 'checkpoints'))
  with full, open(path, 'a+b') as f:
    cut_short = False
    if f.seek(0, os.SEEK_END) > 0:
      f.seek(-1, os.SEEK_END)
      cut_short = f.read(1) != b'\n'
    f.write((('\n' if cut_short else '') + json.dumps(record) + '\n').encode())


def settings_of(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """config.eval with the fields that config.evals[name] sets (those not None)."""
  settings = ml_collections.ConfigDict(config.eval.to_dict())
  for field, value in config.evals[name].items():
    if field not in ENTRY_FIELDS and value is not None:
      settings[field] = value
  return settings


def split_of(config: ml_collections.ConfigDict, name: str) -> str:
  """The split config.evals[name] evaluates ('' = config.data.eval_split)."""
  return config.evals[name].split or config.data.eval_split


def every_steps_of(config: ml_collections.ConfigDict, name: str) -> int:
  """How often config.evals[name] runs in training (None = config.train.eval_every)."""
  every = config.evals[name].every_steps
  return config.train.eval_every if every is None else every


@dataclasses.dataclass
class Predictions:
  confusion: np.ndarray  # int64 [C, C], rows = ground truth; the same on every host.
  examples: list  # Up to `keep` (source index, prediction at label size), this process.
  skipped: int = 0  # Bad examples skipped (config.data.skip_bad_examples), all hosts.


def run_over_source(eval_step: Callable, variables: Any, source: Any,
                    settings: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                    mesh: Mesh, data_axes: tuple[str, ...], split: str, keep: int = 0,
                    on_prediction: Callable[[int, np.ndarray, dict], None] | None = None
                    ) -> Predictions:
  """Runs `eval_step` (inference.make_eval_step) over every image of `source`.

  on_prediction(source index, prediction at the label's size, extras) is called on each host
  for each of its examples; extras holds 'uncertainty' at the label's size with Monte-Carlo
  dropout, else nothing. Bad examples skipped by the pipeline (config.data.skip_bad_examples)
  count nowhere; more than config.data.max_bad_fraction of them is an error.
  """
  num_classes = source.num_classes
  batch_sharding = sharding.batch_sharding(mesh, data_axes)
  dataset, _ = pipeline.eval_dataset(settings, data, source, jax.process_index(),
                                     jax.process_count())
  total = metrics.ConfusionMatrix(np.zeros((num_classes, num_classes), np.int64))
  running, running_pixels = None, 0
  examples = []
  skipped = 0
  for batch in dataset:
    indices = batch.pop('index')
    skipped += int(np.sum(batch.pop('skipped', 0)))
    pixels = int(np.prod(batch['label'].shape)) * jax.process_count()
    if running is not None and running_pixels + pixels > _INT32_MAX:
      total, running, running_pixels = total.merge(running.to_host()), None, 0
    confusion, pred = eval_step(variables, sharding.to_global(batch, batch_sharding))
    uncertainty = None
    if isinstance(pred, dict):  # Monte-Carlo dropout.
      pred, uncertainty = pred['pred'], sharding.local_rows(pred['uncertainty'])
    running = confusion if running is None else running.merge(confusion)
    running_pixels += pixels
    wanted = on_prediction is not None or len(examples) < keep
    if wanted and np.any(indices >= 0):
      for row, (index, p, hw) in enumerate(zip(indices, sharding.local_rows(pred),
                                               batch['label_hw'])):
        if index < 0:
          continue
        if on_prediction is not None:
          extras = {} if uncertainty is None else {
              'uncertainty': uncertainty[row, :hw[0], :hw[1]]}
          on_prediction(int(index), p[:hw[0], :hw[1]], extras)
        if len(examples) < keep:
          examples.append((int(index), p[:hw[0], :hw[1]]))
  if running is not None:
    total = total.merge(running.to_host())
  if jax.process_count() > 1:  # Every host learns the total (and raises, or not, alike).
    skipped = int(np.sum(multihost_utils.process_allgather(np.int64(skipped))))
  if skipped:
    message = (f'Evaluation on {split}: skipped {skipped} bad example(s) of {len(source)} '
               '(the log names them)')
    if skipped > data.max_bad_fraction * len(source):
      raise files.DataError(f'{message}, more than config.data.max_bad_fraction='
                            f'{data.max_bad_fraction}.')
    logging.warning('%s; they count nowhere.', message)
  return Predictions(total.compute(), examples, skipped)
