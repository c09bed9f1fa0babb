"""Prediction overlays: image | ground truth | prediction, labels drawn in the class palette."""

import os

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
