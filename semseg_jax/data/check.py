"""--mode=check_data: reads every example of a split and reports what is wrong with it.

For each split of config.data.check_splits (default: the train and eval splits) every example
is decoded as training would: unreadable files, image/label size mismatches, sizes that differ
from the image header, and label values that are neither a class nor the ignore label are
listed with the files they concern. Class pixel frequencies follow, with the class weights they
imply for the weighted losses (config.loss.class_weights): median-frequency balancing (Eigen &
Fergus; SegNet), ENet's 1 / ln(1.02 + p), LinkNet's and ESPNet's. The report goes to the log and to
<workdir>/check_data_<split>.json; the run fails when any problem was found.
"""

import json
import multiprocessing
import os
from typing import Any

from absl import logging
import ml_collections
import numpy as np

from semseg_jax.data import datasets
from semseg_jax.data.datasets import files

_source: Any = None  # The split's source, in each worker process.


def _init_worker(source: Any) -> None:
  global _source
  _source = source


def _check_one(index: int) -> tuple[int, np.ndarray | None, str | None]:
  """(index, per-class pixel counts with the ignore count last, or None; problem or None)."""
  try:
    header_hw = _source.image_size(index)
    example = _source[index]
  except files.DataError as e:
    return index, None, str(e)
  label = example['label']
  if tuple(header_hw) != label.shape:
    return index, None, (f'{_source.name(index)}: the image header says {tuple(header_hw)} but '
                         f'it decodes to {label.shape}.')
  counts = np.bincount(label.ravel(), minlength=256)
  return index, np.append(counts[:_source.num_classes], counts[_source.ignore_index]), None


def class_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> dict[str, list[float]]:
  """Weights from per-class pixel counts and the pixel counts of the images containing each
  class: median frequency balancing (freq_c = pixels_c / image_pixels_c, weight = median /
  freq_c), ENet's 1 / ln(1.02 + p_c) with p_c = pixels_c / all labelled pixels, and LinkNet's
  (its Torch7 code) 1 / ln(1.02 + pixels_c / the most frequent class's pixels), and ESPNet's
  (its code's, with ERFNet's normVal; CGNet's code too) 1 / ln(1.10 + p_c). Classes that never
  occur get weight 0."""
  pixels = np.asarray(pixels, np.float64)
  present = pixels > 0
  freq = np.where(image_pixels > 0, pixels / np.maximum(image_pixels, 1), 0.0)
  median = np.median(freq[present]) if present.any() else 0.0
  median_frequency = np.where(present, median / np.where(present, freq, 1.0), 0.0)
  share = pixels / max(pixels.sum(), 1.0)
  enet = np.where(present, 1.0 / np.log(1.02 + share), 0.0)
  linknet = np.where(present, 1.0 / np.log(1.02 + pixels / max(pixels.max(), 1.0)), 0.0)
  espnet = np.where(present, 1.0 / np.log(1.10 + share), 0.0)
  return {'median_frequency': median_frequency.round(4).tolist(),
          'enet': enet.round(4).tolist(), 'linknet': linknet.round(4).tolist(),
          'espnet': espnet.round(4).tolist()}


def check_split(config: ml_collections.ConfigDict, split: str, workers: int = 0) -> dict:
  """The report of one split (see the module docstring)."""
  source = datasets.make_source(config.data, split, config.seed)
  num_classes = source.num_classes
  pixels = np.zeros(num_classes + 1, np.int64)  # Classes, then ignored pixels.
  image_pixels = np.zeros(num_classes, np.int64)
  images_with = np.zeros(num_classes, np.int64)
  problems = []

  def add(result) -> None:
    index, counts, problem = result
    if problem is not None:
      problems.append(problem)
      return
    pixels[:] += counts
    present = counts[:num_classes] > 0
    images_with[present] += 1
    image_pixels[present] += counts.sum()
    if (index + 1) % 1000 == 0:
      logging.info('check_data %s: %d / %d examples read.', split, index + 1, len(source))

  if workers > 0:
    context = multiprocessing.get_context('spawn')
    with context.Pool(workers, initializer=_init_worker, initargs=(source,)) as pool:
      for result in pool.imap(_check_one, range(len(source)), chunksize=8):
        add(result)
  else:
    _init_worker(source)
    for index in range(len(source)):
      add(_check_one(index))
  labelled = pixels[:num_classes].sum()
  report = {
      'dataset': config.data.name, 'split': split, 'examples': len(source),
      'problems': problems, 'class_names': list(source.class_names),
      'class_pixels': pixels[:num_classes].tolist(), 'ignored_pixels': int(pixels[-1]),
      'class_frequency': (pixels[:num_classes] / max(labelled, 1)).round(6).tolist(),
      'images_with_class': images_with.tolist(),
      'class_weights': class_weights(pixels[:num_classes], image_pixels),
  }
  return report


def format_report(report: dict) -> str:
  lines = [f'{report["dataset"]} {report["split"]}: {report["examples"]} examples, '
           f'{len(report["problems"])} with problems, {report["ignored_pixels"]} ignored '
           f'pixels.']
  lines += [f'  problem: {p}' for p in report['problems']]
  weights = report['class_weights']
  lines.append(f'  {"class":<24}{"pixels":>14}{"freq":>10}{"images":>8}{"medfreq w":>11}'
               f'{"enet w":>9}{"linknet w":>11}{"espnet w":>10}')
  for k, name in enumerate(report['class_names']):
    lines.append(f'  {name[:23]:<24}{report["class_pixels"][k]:>14}'
                 f'{report["class_frequency"][k]:>10.4f}{report["images_with_class"][k]:>8}'
                 f'{weights["median_frequency"][k]:>11.4f}{weights["enet"][k]:>9.4f}'
                 f'{weights["linknet"][k]:>11.4f}{weights["espnet"][k]:>10.4f}')
  for kind in ('median_frequency', 'enet', 'linknet', 'espnet'):
    lines.append(f'  {kind} weights: --config.loss.class_weights="'
                 f'{tuple(round(w, 4) for w in weights[kind])}"')
  return '\n'.join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Checks config.data.check_splits (or the train and eval splits); fails on any problem."""
  splits = tuple(config.data.check_splits) or tuple(dict.fromkeys(
      (config.data.train_split, config.data.eval_split)))
  os.makedirs(workdir, exist_ok=True)
  reports = []
  for split in splits:
    report = check_split(config, split, config.data.num_workers)
    logging.info('Data check:\n%s', format_report(report))
    path = os.path.join(workdir, f'check_data_{split.replace("/", "_")}.json')
    with open(path, 'w') as f:
      json.dump(report, f, indent=1)
    logging.info('Wrote %s.', path)
    reports.append(report)
  bad = {r['split']: len(r['problems']) for r in reports if r['problems']}
  if bad:
    raise files.DataError(f'check_data found problems (per split: {bad}); the log and the '
                          f'check_data_<split>.json files in {workdir} list them.')
  return reports
