"""Exact ground-truth boundary distance maps for the distance-based losses, in the input pipeline.

For a class c with mask m = (label == c) (ignored pixels belong to no class), the boundary
distance of a pixel is the Euclidean distance to the nearest pixel on the other side of m's
boundary: edt(m) + edt(~m) with scipy's exact `distance_transform_edt`, so >= 1 everywhere.
A mask that is empty or covers every pixel has no boundary and gets an all-zero map.

The maps are stored compactly: at most K = `config.loss.distance_max_classes` present classes
per example, `classes` [K] (ascending, padded with -1) and `maps` [H, W, K] (padded with 0).
They must be computed after augmentation, at label resolution; `semseg_jax.distance_losses`
scatters them to the C classes on device.
"""

import numpy as np
from scipy import ndimage


def one_boundary_distance(mask: np.ndarray) -> np.ndarray:
  """float32 edt(mask) + edt(~mask) of a boolean [H, W] mask; all 0 if mask is empty or full."""
  mask = np.asarray(mask, dtype=bool)
  if mask.all() or not mask.any():
    return np.zeros(mask.shape, np.float32)
  dist = ndimage.distance_transform_edt(mask) + ndimage.distance_transform_edt(~mask)
  return dist.astype(np.float32)


def boundary_distance_maps(label: np.ndarray, max_classes: int,
                           ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
  """(classes int32 [K], maps float32 [H, W, K]), K = max_classes, of an int label [H, W].

  classes holds the present classes (values != ignore_index) in ascending order, padded with -1;
  maps[..., k] is `one_boundary_distance(label == classes[k])`, all 0 for padded slots.
  Raises ValueError if more than max_classes classes are present.
  """
  label = np.asarray(label)
  if label.ndim != 2:
    raise ValueError(f'boundary_distance_maps expects a label [H, W]; got shape {label.shape}.')
  present = np.unique(label[label != ignore_index])
  if len(present) > max_classes:
    raise ValueError(f'config.loss.distance_max_classes={max_classes} is too small: a label has '
                     f'{len(present)} classes present (more than the limit of {max_classes}).')
  classes = np.full((max_classes,), -1, np.int32)
  classes[:len(present)] = present
  maps = np.zeros((*label.shape, max_classes), np.float32)
  for k, c in enumerate(present):
    maps[..., k] = one_boundary_distance(label == c)
  return classes, maps
