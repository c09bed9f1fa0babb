"""The segmentation evaluator: one confusion matrix over a whole split, the metrics derived from
it, and pictures of the first predictions.

Writes, for evaluator <name> at step N: the per-class table to the log; the summary to
TensorBoard under <name>/ and, with its per-class IoU, one line of <workdir>/metrics.jsonl; the
matrix as <workdir>/confusion_<name>_step_N.npy and as a row-normalised heat map (.png); and the
first `num_overlays` images as image | ground truth | prediction panels in
<workdir>/overlays/<name>/step_N/ (process 0 writes files).
"""

import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
from clu import metric_writers
from jax.sharding import Mesh

from semseg_jax import metrics
from semseg_jax import visualize
from semseg_jax.data import datasets
from semseg_jax.evaluators import common
from semseg_jax.evaluators import inference


class SegmentationEvaluator:
  """Confusion-matrix metrics (aAcc, mIoU, ...) of a split, with overlays."""

  def __init__(self, name: str, config: ml_collections.ConfigDict, model: Any, mesh: Mesh,
               workdir: str, writer: metric_writers.MetricWriter, num_classes: int):
    self.name, self.config, self.mesh = name, config, mesh
    self.workdir, self.writer = workdir, writer
    self.settings = common.settings_of(config, name)
    self.split = common.split_of(config, name)
    self.data_axes = tuple(config.mesh.data_axes)
    self.eval_step = inference.make_eval_step(model, self.settings, mesh, self.data_axes,
                                              num_classes, config.data.ignore_index)
    self.source = datasets.make_source(config.data, self.split, config.seed)  # Fails at start.

  def run(self, variables: Any, step: int) -> dict:
    """Evaluates `variables`, writes the results (see the module docstring), returns the
    summary metrics."""
    start = time.time()
    result = common.run_over_source(self.eval_step, variables, self.source, self.settings,
                                    self.config.data, self.mesh, self.data_axes, self.split,
                                    keep=self.settings.num_overlays)
    summary = metrics.summary_metrics(result.confusion, self.source.class_names)
    logging.info('Evaluation %s at step %d on %s (%.1f s):\n%s', self.name, step, self.split,
                 time.time() - start, metrics.format_table(summary, self.source.class_names))
    self._write(step, summary, result)
    return summary

  def _write(self, step: int, summary: dict, result: common.Predictions) -> None:
    source, ignore_index = self.source, self.config.data.ignore_index
    self.writer.write_scalars(step, {f'{self.name}/{k}': summary[k]
                                     for k in metrics.SUMMARY_KEYS})
    panels = {}
    for index, pred in result.examples:
      example = source[index]
      panels[source.name(index)] = visualize.overlay_panel(
          example['image'], example['label'], pred, source.palette, ignore_index)
    if panels:
      self.writer.write_images(step, {f'{self.name}/overlay/{k}': v[None]
                                      for k, v in panels.items()})
    self.writer.flush()
    if jax.process_index() != 0:
      return
    for image_name, panel in panels.items():
      visualize.save_png(os.path.join(self.workdir, 'overlays', self.name, f'step_{step:07d}',
                                      f'{image_name}.png'), panel)
    confusion_path = os.path.join(self.workdir, f'confusion_{self.name}_step_{step:07d}')
    np.save(confusion_path + '.npy', result.confusion)
    visualize.save_confusion_heatmap(confusion_path + '.png', result.confusion,
                                     source.class_names,
                                     f'{self.name} ({self.split}), step {step}: row-normalised '
                                     'confusion')
    record = {'step': step, 'evaluator': self.name, 'split': self.split,
              **{k: summary[k] for k in metrics.SUMMARY_KEYS}, 'IoU': summary['per_class_IoU'],
              'skipped_examples': result.skipped}
    common.append_record(self.workdir, record)
