"""A procedurally generated segmentation dataset: no files, random access, any image size.

Each image has a noisy colour-gradient background and one to three whole objects. Every
object's colours are drawn from the same uniform distribution whatever its class, so a single
pixel's colour says nothing about its class: shape (disk, square, triangle) or texture (stripes,
checkerboard on a disk or a square) decides. The one-pixel rim of every object is labelled
`ignore_index`, like the borders of Pascal VOC. Example `i` of a split is a pure function of
(seed, split, i, image size).
"""

from typing import Any, Sequence

import numpy as np

CLASS_NAMES = ('background', 'disk', 'square', 'triangle', 'stripes', 'checkerboard')
NUM_CLASSES = len(CLASS_NAMES)
PALETTE = np.array(
    [[0, 0, 0], [220, 20, 60], [0, 130, 200], [60, 180, 75], [255, 225, 25], [145, 30, 180]],
    dtype=np.uint8)
_SPLIT_IDS = {'train': 0, 'val': 1, 'test': 2}


def _region(shape: str, yy, xx, cy, cx, radius, angle) -> np.ndarray:
  """Boolean mask of a disk, square or triangle centred at (cy, cx), rotated by angle."""
  dy, dx = yy - cy, xx - cx
  if shape == 'disk':
    return dy**2 + dx**2 <= radius**2
  # Rotate coordinates into the shape's frame.
  u = np.cos(angle) * dx + np.sin(angle) * dy
  v = -np.sin(angle) * dx + np.cos(angle) * dy
  if shape == 'square':
    half = radius  # Circumscribes the disk of this radius: its corners stand out.
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  # Equilateral triangle with circumradius 1.2 * radius: inside all three edge half-planes.
  inside = np.ones_like(u, dtype=bool)
  for k in range(3):
    theta = 2 * np.pi * k / 3
    inside &= np.cos(theta) * u + np.sin(theta) * v <= 0.6 * radius
  return inside


def _texture(kind: str, yy, xx, rng: np.random.Generator) -> np.ndarray:
  """Boolean pattern of stripes (random angle and period) or a checkerboard (random cell)."""
  if kind == 'stripes':
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6.0, 8.0)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    return np.floor(t / (period / 2)) % 2 == 0
  cell = rng.integers(3, 5)
  return (yy // cell + xx // cell) % 2 == 0


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  return rng.uniform(0, 255, size=3)


def _contrasting_colour(rng: np.random.Generator, other: np.ndarray,
                        min_distance: float = 100.0) -> np.ndarray:
  """A uniform random colour at least min_distance (RGB Euclidean) from `other`."""
  for _ in range(100):
    colour = _random_colour(rng)
    if np.linalg.norm(colour - other) >= min_distance:
      return colour
  return 255.0 - other


def generate_example(seed: int, split_id: int, index: int, image_size: Sequence[int],
                     ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
  """Returns (image uint8 [H, W, 3], label uint8 [H, W]) of one example."""
  h, w = image_size
  rng = np.random.default_rng([seed, split_id, index])
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  # Background: a linear gradient between two random colours.
  angle = rng.uniform(0, 2 * np.pi)
  t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
  t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
  image = (_random_colour(rng) * (1 - t[..., None]) + _random_colour(rng) * t[..., None])
  label = np.zeros((h, w), np.uint8)
  scale = min(h, w)
  placed = []  # (cy, cx, radius) of the objects so far.
  for _ in range(rng.integers(1, 4)):
    cls = int(rng.integers(1, NUM_CLASSES))
    # Whole objects that barely touch: each one's shape is there to be seen.
    for _ in range(10):
      radius = rng.uniform(0.16, 0.26) * scale
      cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
      if all(np.hypot(cy - y, cx - x) >= 0.9 * (radius + r) for y, x, r in placed):
        break
    else:
      continue
    placed.append((cy, cx, radius))
    shape_angle = 0.0  # Upright: shape, not pose, is the task.
    name = CLASS_NAMES[cls]
    # Every colour is uniform over RGB whatever the class; only visibility is ensured: an
    # object differs from the background under its centre, a texture's two colours differ.
    background = image[int(cy), int(cx)]
    if name in ('stripes', 'checkerboard'):
      region = _region(('disk', 'square')[rng.integers(2)], yy, xx, cy, cx, radius, shape_angle)
      pattern = _texture(name, yy, xx, rng)
      first = _contrasting_colour(rng, background)
      colour = np.where(pattern[..., None], first, _contrasting_colour(rng, first))
    else:
      region = _region(name, yy, xx, cy, cx, radius, shape_angle)
      colour = _contrasting_colour(rng, background)
    image = np.where(region[..., None], colour, image)
    label[region] = cls
  image = image + rng.normal(0, 8.0, size=image.shape)
  # Ignore the one-pixel rim of every object: object pixels with a 4-neighbour of another label.
  padded = np.pad(label, 1, mode='edge')
  centre = padded[1:-1, 1:-1]
  rim = ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre)
         | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
  label = np.where(rim & (label > 0), np.uint8(ignore_index), label)
  return np.clip(image, 0, 255).astype(np.uint8), label


# Generated examples a source keeps, in bytes per process (the quickstart's 2,000 training
# examples at 64x64 take 31 MiB).
KEPT_BYTES = 256 * 2**20


class SyntheticSource:
  """Random-access source of synthetic examples; what grain's MapDataset.source takes.

  Training reads each example many times (the quickstart each of its 2,000 examples 12 times),
  and generating one costs more than the rest of the input pipeline together (0.8 ms at 64x64),
  so a source keeps the examples it generated, the first KEPT_BYTES' worth of indices, and hands
  out copies. A worker process that receives the source starts with none kept.
  """

  class_names = CLASS_NAMES
  palette = PALETTE
  num_classes = NUM_CLASSES

  def __init__(self, split: str, size: int, image_size: Sequence[int], seed: int = 0,
               ignore_index: int = 255):
    if split not in _SPLIT_IDS:
      raise ValueError(f'synthetic dataset: unknown split {split!r}; expected one of '
                       f'{sorted(_SPLIT_IDS)}.')
    if len(image_size) != 2 or min(image_size) < 8:
      raise ValueError('config.data.synthetic_image_size: expected (height, width) of at least '
                       f'8 pixels each, got {tuple(image_size)}.')
    self.split, self.size, self.seed = split, int(size), int(seed)
    self.image_hw = (int(image_size[0]), int(image_size[1]))
    self.ignore_index = ignore_index
    self._kept = {}  # index -> (image, label), for indices below self._kept_below.
    self._kept_below = KEPT_BYTES // (4 * self.image_hw[0] * self.image_hw[1])

  def __getstate__(self) -> dict:
    return {**self.__dict__, '_kept': {}}

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.size:
      raise IndexError(f'synthetic {self.split} index {index} out of range [0, {self.size}).')
    example = self._kept.get(index)
    if example is None:
      example = generate_example(self.seed, _SPLIT_IDS[self.split], int(index), self.image_hw,
                                 self.ignore_index)
      if index < self._kept_below:
        self._kept[index] = example
    image, label = example
    return {'image': image.copy(), 'label': label.copy(), 'index': int(index)}

  def image_size(self, index: int) -> tuple[int, int]:
    return self.image_hw

  def name(self, index: int) -> str:
    return f'synthetic_{self.split}_{index:06d}'


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """The six shape and texture classes, whatever config.data says."""
  del data
  return CLASS_NAMES, PALETTE


def from_config(data: Any, split: str, seed: int = 0) -> SyntheticSource:
  """The `split` of config.data.synthetic_* sizes; example i is a pure function of `seed`."""
  field = 'synthetic_train_size' if split == 'train' else 'synthetic_eval_size'
  size = data[field]
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise ValueError(f'config.data.{field}={size!r}; expected a number of images >= 1.')
  return SyntheticSource(split, size, data.synthetic_image_size, seed=seed,
                         ignore_index=data.ignore_index)
