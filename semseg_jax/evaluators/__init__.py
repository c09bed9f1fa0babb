"""Evaluators, configured in `config.evals`: name -> an entry (configs/default.evaluator) with its
type (a key of EVALUATORS), split, how often it runs in training, and the inference settings in
which it differs from config.eval. One run can so evaluate several splits or settings, e.g.
whole-image val every 2k steps and slide + multi-scale + flip val at the end.

An evaluator is built as `EVALUATORS[type](name, config, model, mesh, workdir, writer,
num_classes)`, which finds its split's files (a bad path fails at start), and has
`run(variables, step) -> dict`.
The parts they share: `inference` (how the model sees an image; the jitted step), `common` (the
loop over a source), `mc_dropout` (Monte-Carlo dropout inference).
"""

from typing import Any

import ml_collections
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
