"""The prediction writer: label maps of every image of a source, for --mode=predict (the images
of config.predict.inputs) or as an evaluator of type 'predict' in config.evals (a split).

For each image, at its own size, under the output directory:
  labels/<name>.png       raw class indices (8-bit, or 16-bit beyond 256 classes),
  colour/<name>.png       the labels in the dataset's palette,
  overlay/<name>.png      the image blended half-and-half with the colour picture,
  uncertainty/<name>.png  with Monte-Carlo dropout, the per-pixel uncertainty (and .npy).
Inference is the evaluation's (whole or slide, scales, flip, aligned resize).
"""

import glob
import os
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from jax.sharding import Mesh
from PIL import Image

from semseg_jax import visualize
from semseg_jax.data import datasets
from semseg_jax.data.datasets import files
from semseg_jax.evaluators import common
from semseg_jax.evaluators import inference

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(inputs: str) -> list[str]:
  """The image files named by config.predict.inputs (a file, a directory or a glob), sorted."""
  field = f'config.predict.inputs={inputs!r}'
  if not inputs:
    raise ValueError(f'{field}: give an image file, a directory of images or a glob pattern.')
  if os.path.isdir(inputs):
    paths = [os.path.join(inputs, n) for n in sorted(os.listdir(inputs))
             if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(inputs, n))]
  elif os.path.isfile(inputs):
    paths = [inputs]
  else:
    paths = sorted(p for p in glob.glob(inputs, recursive=True) if os.path.isfile(p))
  if not paths:
    raise FileNotFoundError(f'{field} matches no image file (suffixes {IMAGE_SUFFIXES} in a '
                            'directory; any file for a file path or glob).')
  stems: dict[str, str] = {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in stems:
      raise ValueError(f'{field}: {stems[stem]} and {path} would both be written as {stem}.png; '
                       'predict one directory at a time.')
    stems[stem] = path
  return paths


class ImageFileSource:
  """Images without labels, as an evaluation source (every label pixel is ignored)."""

  def __init__(self, paths: Sequence[str], class_names: Sequence[str], palette: np.ndarray,
               ignore_index: int,
               max_image_pixels: Optional[int] = files.DEFAULT_MAX_IMAGE_PIXELS):
    self.paths = list(paths)
    self.max_image_pixels = max_image_pixels
    self.class_names = tuple(class_names)
    self.palette = palette
    self.num_classes = len(class_names)
    self.ignore_index = ignore_index

  def __len__(self) -> int:
    return len(self.paths)

  def name(self, index: int) -> str:
    return os.path.splitext(os.path.basename(self.paths[index]))[0]

  def image_size(self, index: int) -> tuple[int, int]:
    return files.image_size(self.paths[index], self.max_image_pixels)

  def read_image(self, index: int) -> np.ndarray:
    """uint8 RGB [H, W, 3]; a DataError (skipped with config.data.skip_bad_examples) names an
    unreadable file."""
    path = self.paths[index]
    with files.open_image(path, path, self.max_image_pixels) as image:
      try:
        return np.array(image if image.mode == 'RGB' else image.convert('RGB'), np.uint8)
      except files.PIL_ERRORS as e:
        raise files.DataError(f'{path}: cannot be decoded as an image ({e}).') from e

  def __getitem__(self, index: int) -> dict[str, Any]:
    image = self.read_image(index)
    return {'image': image, 'label': np.full(image.shape[:2], self.ignore_index, np.int32),
            'index': index}


def label_picture(pred: np.ndarray, num_classes: int) -> Image.Image:
  """Raw class indices as an 8-bit (up to 256 classes) or 16-bit greyscale PNG image."""
  if num_classes <= 256:
    return Image.fromarray(pred.astype(np.uint8), mode='L')
  return Image.fromarray(pred.astype(np.uint16))  # Mode I;16.


def write_prediction(output_dir: str, name: str, image: np.ndarray, pred: np.ndarray,
                     palette: np.ndarray, num_classes: int) -> None:
  """labels/, colour/ and overlay/ PNGs of one prediction."""
  colour = visualize.colourize(pred, palette, ignore_index=-1)
  overlay = (image.astype(np.float32) * 0.5 + colour.astype(np.float32) * 0.5).round()
  for kind, picture in (('labels', label_picture(pred, num_classes)),
                        ('colour', Image.fromarray(colour)),
                        ('overlay', Image.fromarray(overlay.astype(np.uint8)))):
    os.makedirs(os.path.join(output_dir, kind), exist_ok=True)
    picture.save(os.path.join(output_dir, kind, f'{name}.png'))


def write_uncertainty(output_dir: str, name: str, uncertainty: np.ndarray) -> None:
  """uncertainty/<name>.png: Monte-Carlo dropout's per-pixel variance as 16-bit greyscale,
  65535 = 0.25 (the largest variance a probability can have), and <name>.npy with the floats."""
  os.makedirs(os.path.join(output_dir, 'uncertainty'), exist_ok=True)
  path = os.path.join(output_dir, 'uncertainty', name)
  np.save(path + '.npy', uncertainty.astype(np.float32))
  scaled = np.clip(uncertainty / 0.25, 0.0, 1.0) * 65535.0
  Image.fromarray(scaled.round().astype(np.uint16)).save(path + '.png')


class PredictionWriter:
  """Writes the label maps of every image of `source` (default: the split of config.evals[name])
  with `settings` (default: that entry's) into `output_dir` (default: the entry's output_dir, or
  <workdir>/predictions/<name>)."""

  def __init__(self, name: str, config: ml_collections.ConfigDict, model: Any, mesh: Mesh,
               workdir: str, writer: metric_writers.MetricWriter, num_classes: int,
               source: Any = None, settings: ml_collections.ConfigDict | None = None,
               output_dir: str = ''):
    del writer  # Files only.
    self.name, self.config, self.mesh, self.workdir = name, config, mesh, workdir
    self.settings = settings if settings is not None else common.settings_of(config, name)
    self.split = 'images' if source is not None else common.split_of(config, name)
    self.output_dir = (output_dir or (config.evals[name].output_dir if name in config.evals
                                      else '') or os.path.join(workdir, 'predictions', name))
    self.num_classes = num_classes
    self.data_axes = tuple(config.mesh.data_axes)
    self.eval_step = inference.make_eval_step(model, self.settings, mesh, self.data_axes,
                                              num_classes, config.data.ignore_index)
    self.source = source if source is not None else datasets.make_source(
        config.data, self.split, config.seed)

  def run(self, variables: Any, step: int) -> dict:
    """Predicts and writes every image; returns {'images': how many this process wrote}."""
    source, written = self.source, []
    palette = source.palette

    def on_prediction(index: int, pred: np.ndarray, extras: dict) -> None:
      image = (source.read_image(index) if hasattr(source, 'read_image')
               else source[index]['image'])
      write_prediction(self.output_dir, source.name(index), image, pred, palette,
                       self.num_classes)
      if 'uncertainty' in extras:
        write_uncertainty(self.output_dir, source.name(index), extras['uncertainty'])
      written.append(index)

    logging.info('Predicting %d images (%s) with the weights of step %d into %s.', len(source),
                 self.name, step, self.output_dir)
    result = common.run_over_source(self.eval_step, variables, source, self.settings,
                                    self.config.data, self.mesh, self.data_axes, self.split,
                                    on_prediction=on_prediction)
    logging.info('Process %d wrote %d predictions to %s.', jax.process_index(), len(written),
                 self.output_dir)
    if jax.process_index() == 0:  # The record that this evaluation completed.
      record = {'step': step, 'evaluator': self.name, 'split': self.split,
                'images': len(source) - result.skipped, 'skipped_examples': result.skipped,
                'output_dir': self.output_dir}
      common.append_record(self.workdir, record)
    return {'images': len(written)}


def image_file_source(config: ml_collections.ConfigDict) -> 'ImageFileSource':
  """The images of config.predict.inputs, with the classes and palette of config.data."""
  class_names, palette = datasets.class_names_and_palette(config.data)
  return ImageFileSource(list_images(config.predict.inputs), class_names, palette,
                         config.data.ignore_index, config.data.max_image_pixels)
