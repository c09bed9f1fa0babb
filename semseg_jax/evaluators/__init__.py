"""Evaluators, configured in `config.evals`: name -> an entry (configs/default.evaluator) with its
type (a key of EVALUATORS), split, how often it runs in training, and the inference settings in
which it differs from config.eval. One run can so evaluate several splits or settings, e.g.
whole-image val every 2k steps and slide + multi-scale + flip val at the end.

An evaluator is built as `EVALUATORS[type](name, config, model, mesh, workdir, writer,
num_classes)`, which finds its split's files (a bad path fails at start), and has
`run(variables, step) -> dict`; each run ends with one line of <workdir>/metrics.jsonl (step,
evaluator, split and its results), which is also the record that it completed (see `owed`).
The parts they share: `inference` (how the model sees an image; the jitted step), `common` (the
loop over a source), `mc_dropout` (Monte-Carlo dropout inference).
"""

import json
import os
from typing import Any

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
from clu import metric_writers
from jax.sharding import Mesh

from semseg_jax.evaluators import common
from semseg_jax.evaluators import inference
from semseg_jax.evaluators.predict import PredictionWriter
from semseg_jax.evaluators.segmentation import SegmentationEvaluator

EVALUATORS = {
    'segmentation': SegmentationEvaluator,
    'predict': PredictionWriter,
}


def check(config: ml_collections.ConfigDict) -> None:
  """Fails naming the field of config.eval or of a config.evals entry that cannot work."""
  inference.check_eval_config(config.eval)
  expected = set(config.eval) - {'checkpoint_step'} | set(common.ENTRY_FIELDS)
  for name, entry in config.evals.items():
    field = f'config.evals.{name}'
    if not isinstance(entry, ml_collections.ConfigDict) or set(entry) != expected:
      missing = sorted(expected - set(entry)) if hasattr(entry, 'keys') else sorted(expected)
      raise ValueError(f'{field} must be made by configs.default.evaluator(...) with every '
                       f'field; missing {missing}.')
    if entry.type not in EVALUATORS:
      raise ValueError(f'{field}.type={entry.type!r}; expected one of {sorted(EVALUATORS)}.')
    if entry.every_steps is not None and entry.every_steps < -1:
      raise ValueError(f'{field}.every_steps={entry.every_steps}; expected N > 0 (every N steps '
                       'and at the end), 0 (at the end), -1 (never) or None '
                       '(config.train.eval_every).')
    inference.check_eval_config(common.settings_of(config, name), field)


def from_config(config: ml_collections.ConfigDict, model: Any, mesh: Mesh, workdir: str,
                writer: metric_writers.MetricWriter, num_classes: int
                ) -> list[tuple[str, Any, int]]:
  """(name, evaluator, every_steps) for each entry of config.evals that ever runs (every_steps
  not -1), in the order of config.evals."""
  evaluators = []
  for name, entry in config.evals.items():
    every = common.every_steps_of(config, name)
    if every < 0:
      continue
    evaluators.append((name, EVALUATORS[entry.type](name, config, model, mesh, workdir, writer,
                                                    num_classes), every))
  return evaluators


def due(every_steps: int, step: int, num_steps: int) -> bool:
  """Whether an evaluator that runs every `every_steps` (0: at the end only) runs at `step`."""
  return step == num_steps or (every_steps > 0 and step % every_steps == 0)


def completed(workdir: str) -> set[tuple[int, str]]:
  """(step, evaluator name) of every evaluation <workdir>/metrics.jsonl records; a line cut
  short by a kill is no record."""
  path, done = os.path.join(workdir, 'metrics.jsonl'), set()
  if not os.path.exists(path):
    return done
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
        done.add((int(record['step']), record.get('evaluator', 'val')))
      except (ValueError, KeyError, TypeError):
        continue
  return done


def owed(evaluators: list[tuple[str, Any, int]], step: int, num_steps: int,
         workdir: str) -> list[tuple[str, Any]]:
  """The evaluators due at `step` (a resumed checkpoint's) that have no record of running
  there: a kill, crash or preemption came between the checkpoint and their end. Process 0
  reads the record and every process follows it, so all run the same evaluations."""
  if step <= 0:
    return []
  done = completed(workdir) if jax.process_index() == 0 else set()
  missing = np.array([due(every, step, num_steps) and (step, name) not in done
                      for name, _, every in evaluators], bool)
  if jax.process_count() > 1:
    missing = np.asarray(multihost_utils.broadcast_one_to_all(missing))
  return [(name, evaluator) for (name, evaluator, _), m in zip(evaluators, missing) if m]
