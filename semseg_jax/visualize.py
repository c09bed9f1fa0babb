"""Prediction overlays: image | ground truth | prediction, labels drawn in the class palette."""

import os
from typing import Sequence

import numpy as np
from PIL import Image

IGNORE_COLOUR = (255, 255, 255)


def colourize(label: np.ndarray, palette: np.ndarray, ignore_index: int = 255) -> np.ndarray:
  """uint8 [H, W, 3] picture of a label map; ignored (or out-of-range) pixels are white."""
  palette = np.asarray(palette, np.uint8)
  valid = (label >= 0) & (label < len(palette)) & (label != ignore_index)
  out = palette[np.where(valid, label, 0)]
  out[~valid] = IGNORE_COLOUR
  return out


def overlay_panel(image: np.ndarray, label: np.ndarray, pred: np.ndarray, palette: np.ndarray,
                  ignore_index: int = 255) -> np.ndarray:
  """Image, ground truth and prediction side by side, all at the label's resolution."""
  if image.shape[:2] != label.shape or pred.shape != label.shape:
    raise ValueError(f'overlay: image {image.shape[:2]}, label {label.shape} and prediction '
                     f'{pred.shape} must have one size.')
  return np.concatenate([image.astype(np.uint8), colourize(label, palette, ignore_index),
                         colourize(pred, palette, ignore_index)], axis=1)


def save_png(path: str, picture: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(picture).save(path)


def row_normalize(confusion: np.ndarray) -> np.ndarray:
  """Each ground-truth row divided by its total (the fraction of that class predicted as each
  class); rows of classes absent from the ground truth are nan."""
  confusion = np.asarray(confusion, np.float64)
  totals = confusion.sum(axis=1, keepdims=True)
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(totals > 0, confusion / np.where(totals > 0, totals, 1), np.nan)


def save_confusion_heatmap(path: str, confusion: np.ndarray, class_names: Sequence[str],
                           title: str = '') -> None:
  """Draws the row-normalised confusion matrix (rows: ground truth, columns: prediction) with
  class names on both axes to a PNG; absent ground-truth classes are left blank."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  num_classes = len(class_names)
  side = max(4.0, 0.16 * num_classes + 2.5)
  fontsize = min(9.0, max(5.0, 270.0 / max(num_classes, 1)))
  fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=100)
  image = ax.imshow(row_normalize(confusion), cmap='viridis', vmin=0.0, vmax=1.0,
                    interpolation='nearest')
  ticks = np.arange(num_classes)
  ax.set_xticks(ticks, labels=class_names, rotation=90, fontsize=fontsize)
  ax.set_yticks(ticks, labels=class_names, fontsize=fontsize)
  ax.set_xlabel('prediction')
  ax.set_ylabel('ground truth')
  if title:
    ax.set_title(title)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label='fraction of the row')
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
