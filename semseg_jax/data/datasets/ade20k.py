"""ADE20K scene parsing (SceneParsing / ADEChallengeData2016), read straight from the release.

On disk the release looks like

    ADEChallengeData2016/
      images/training/ADE_train_00000001.jpg ...      RGB JPEG
      images/validation/ADE_val_00000001.jpg ...
      annotations/training/ADE_train_00000001.png ... 8-bit single-channel PNG
      annotations/validation/ADE_val_00000001.png ...

An annotation pixel holds 0 for "other / unlabelled" and k in 1..150 for class k of
objectInfo150. Training uses the 150 classes only, so labels are shifted down by one and 0
becomes `ignore_index` (`reduce_zero_label`). The source applies that shift once, in
`__getitem__`; nothing downstream shifts again.

Class names and palette follow mmsegmentation's ADE20KDataset (the names are the first synonym
of each objectInfo150 entry), so predictions coloured here look like mmseg's.
"""

import operator
import os
import pathlib
from typing import Any, Optional, Sequence

import numpy as np

from semseg_jax.data.datasets import files

CLASS_NAMES: tuple[str, ...] = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing',
    'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink',
    'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind',
    'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus',
    'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister',
    'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain',
    'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket',
    'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen',
    'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan',
    'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass',
    'clock', 'flag')

NUM_CLASSES = 150

PALETTE: np.ndarray = np.array([
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
    [120, 120, 80], [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7],
    [224, 5, 255], [235, 255, 7], [150, 5, 61], [120, 120, 70], [8, 255, 51],
    [255, 6, 82], [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3],
    [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255], [255, 7, 71],
    [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10],
    [7, 255, 255], [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7],
    [255, 122, 8], [0, 255, 20], [255, 8, 41], [255, 5, 153], [6, 51, 255],
    [235, 12, 255], [160, 150, 20], [0, 163, 255], [140, 140, 140], [250, 10, 15],
    [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0], [153, 255, 0],
    [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112],
    [0, 255, 133], [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0],
    [0, 143, 255], [51, 255, 0], [0, 82, 255], [0, 255, 41], [0, 255, 173],
    [10, 0, 255], [173, 255, 0], [0, 255, 153], [255, 92, 0], [255, 0, 255],
    [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20], [255, 184, 184],
    [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255],
    [0, 122, 255], [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0],
    [143, 255, 0], [82, 0, 255], [163, 255, 0], [255, 235, 0], [8, 184, 170],
    [133, 0, 255], [0, 255, 92], [184, 0, 255], [255, 0, 31], [0, 184, 255],
    [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255], [112, 224, 255],
    [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235],
    [245, 0, 255], [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0],
    [0, 204, 255], [20, 0, 255], [255, 255, 0], [0, 153, 255], [0, 41, 255],
    [0, 255, 204], [41, 0, 255], [41, 255, 0], [173, 0, 255], [0, 245, 255],
    [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255], [184, 255, 0],
    [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255],
], dtype=np.uint8)
PALETTE.setflags(write=False)

SPLITS = {'train': 'training', 'val': 'validation'}

DIRNAME = 'ADEChallengeData2016'
IMAGE_SUFFIX = '.jpg'
LABEL_SUFFIX = '.png'
# PIL modes whose pixels are one integer each; anything else is not an ADE20K annotation.
_SINGLE_CHANNEL_MODES = ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L')

assert len(CLASS_NAMES) == NUM_CLASSES and PALETTE.shape == (NUM_CLASSES, 3)

LAYOUT = f"""Expected layout (root is the {DIRNAME} directory itself):
  {DIRNAME}/
    images/
      training/ADE_train_00000001.jpg ...
      validation/ADE_val_00000001.jpg ...
    annotations/
      training/ADE_train_00000001.png ...
      validation/ADE_val_00000001.png ..."""


def reduce_zero_label(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
  """Raw ADE20K label -> training label: 0 -> ignore_index, k -> k - 1 for k in 1..150.

  Takes uint8 [H, W] (any integer array with values in 0..255 is accepted) and returns a new
  uint8 array of the same shape; the input is not modified. Values are not range-checked here:
  the source rejects raw values above 150 before calling this.
  """
  ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, 'ADE20K')
  label = np.asarray(label)
  if label.dtype != np.uint8:
    if not np.issubdtype(label.dtype, np.integer):
      raise ValueError(f'reduce_zero_label expects an integer label array, got {label.dtype}.')
    if label.size and (label.min() < 0 or label.max() > 255):
      raise ValueError(f'reduce_zero_label expects values in 0..255, got '
                       f'[{label.min()}, {label.max()}].')
    label = label.astype(np.uint8)
  table = (np.arange(256, dtype=np.int16) - 1).astype(np.uint8)  # 0 wraps to 255 ...
  table[0] = ignore_index  # ... and is then set explicitly.
  return table[label]


def _layout_error(message: str) -> ValueError:
  return ValueError(f'ADE20K: {message}\n{LAYOUT}')


def _hint_for_wrong_root(root: pathlib.Path) -> Optional[str]:
  """A sentence for a root that is near the right directory but is not it; None otherwise."""
  if (root / DIRNAME).is_dir():
    return (f'{root} contains {DIRNAME}/: root should point at {root / DIRNAME}, not at its '
            f'parent directory.')
  if (root / f'{DIRNAME}.zip').is_file():
    return (f'{root} contains {DIRNAME}.zip but no {DIRNAME}/ directory: unzip it and point '
            f'root at {root / DIRNAME}.')
  if root.name in ('images', 'annotations') and root.parent.name == DIRNAME:
    return f'{root} is inside the dataset: root should point at {root.parent}.'
  if root.name in SPLITS.values() and root.parent.name in ('images', 'annotations'):
    return f'{root} is inside the dataset: root should point at {root.parent.parent}.'
  return None


class ADE20KSource:
  """Random-access source of ADE20K (image, label) pairs; what grain's MapDataset.source takes.

  Item i is {'image': uint8 [H, W, 3] RGB, 'label': uint8 [H, W] reduced (0..149 classes,
  `ignore_index` for unlabelled), 'index': i}, in file-name order. Only paths and plain data are
  kept, so the source pickles cheaply into grain worker processes; files are opened per item.
  """

  class_names: tuple[str, ...] = CLASS_NAMES
  palette: np.ndarray = PALETTE
  num_classes: int = NUM_CLASSES
  max_image_pixels: Optional[int] = files.DEFAULT_MAX_IMAGE_PIXELS  # See files.FileSource.

  def __init__(self, root: Optional[str], split: str, ignore_index: int = 255):
    if split not in SPLITS:
      raise ValueError(f'ADE20K: unknown split {split!r}; expected one of {sorted(SPLITS)}.')
    self.split = split
    self.ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, 'ADE20K')
    if root is None or not str(root).strip():
      raise _layout_error(f'no dataset root given (root={root!r}); set it to the path of the '
                          f'{DIRNAME} directory.')
    root_path = pathlib.Path(os.path.expanduser(str(root)))
    if not root_path.exists():
      raise _layout_error(f'root {root_path} does not exist; set it to the path of the '
                          f'{DIRNAME} directory.')
    if not root_path.is_dir():
      raise _layout_error(f'root {root_path} is not a directory; set it to the path of the '
                          f'{DIRNAME} directory.')

    split_dir = SPLITS[split]
    image_dir = root_path / 'images' / split_dir
    label_dir = root_path / 'annotations' / split_dir
    missing = [str(d) for d in (image_dir, label_dir) if not d.is_dir()]
    if missing:
      hint = _hint_for_wrong_root(root_path)
      message = (f'root {root_path} is missing {" and ".join(missing)} '
                 f'(needed for split {split!r}).')
      raise _layout_error(f'{hint} ({message})' if hint else message)

    images = files.list_files(str(image_dir), IMAGE_SUFFIX)
    labels = files.list_files(str(label_dir), LABEL_SUFFIX)
    if not images:
      raise _layout_error(f'no {IMAGE_SUFFIX} images found in {image_dir} (split {split!r}).')
    try:
      files.pair_files('ADE20K', images, labels, str(image_dir), str(label_dir), 'annotation')
    except ValueError as e:
      raise _layout_error(str(e).removeprefix('ADE20K: ')) from None

    self.root = str(root_path)
    self.image_dir = str(image_dir)
    self.label_dir = str(label_dir)
    self._stems: tuple[str, ...] = tuple(sorted(images))

  def __len__(self) -> int:
    return len(self._stems)

  def __repr__(self) -> str:
    return f'ADE20KSource(root={self.root!r}, split={self.split!r}, len={len(self)})'

  def _index(self, index: int) -> int:
    i = operator.index(index)
    n = len(self._stems)
    if not -n <= i < n:
      raise IndexError(f'index {index} out of range for ADE20K {self.split} with {n} examples.')
    return i % n

  def name(self, index: int) -> str:
    """File stem of example `index`, e.g. 'ADE_val_00000001'."""
    return self._stems[self._index(index)]

  def image_path(self, index: int) -> str:
    return os.path.join(self.image_dir, self.name(index) + IMAGE_SUFFIX)

  def label_path(self, index: int) -> str:
    return os.path.join(self.label_dir, self.name(index) + LABEL_SUFFIX)

  def image_size(self, index: int) -> tuple[int, int]:
    """(H, W) of example `index`, read from the JPEG header; no pixels are decoded."""
    return files.image_size(self.image_path(index), self.max_image_pixels)

  def read_label(self, index: int) -> np.ndarray:
    """The reduced label of example `index` (uint8 [H, W]) without decoding the image."""
    return reduce_zero_label(self._read_label(self.label_path(index)), self.ignore_index)

  def _read_label(self, path: str) -> np.ndarray:
    """Raw annotation as uint8 [H, W] with values 0..150; DataError names the file."""
    with files.open_image(path, f'ADE20K: annotation {path}', self.max_image_pixels) as image:
      mode = image.mode
      if mode not in _SINGLE_CHANNEL_MODES:
        raise files.DataError(f'ADE20K: annotation {path} has PIL mode {mode!r} '
                              f'({len(image.getbands())} channel(s)); expected a single-channel '
                              f'8-bit PNG (mode L) with values 0..{NUM_CLASSES}.')
      try:
        raw = np.asarray(image)
      except OSError as e:
        raise files.DataError(f'ADE20K: annotation {path} cannot be decoded ({e}).') from e
    if raw.ndim != 2:
      raise files.DataError(f'ADE20K: annotation {path} decodes to shape {raw.shape}; '
                            f'expected a single-channel [H, W] image.')
    low, high = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    if low < 0 or high > NUM_CLASSES:
      bad = int(np.count_nonzero((raw < 0) | (raw > NUM_CLASSES)))
      raise files.DataError(f'ADE20K: annotation {path} has values in [{low}, {high}]; '
                            f'expected 0..{NUM_CLASSES} (0 = unlabelled, k = class k). {bad} '
                            f'pixel(s) are out of range.')
    return raw.astype(np.uint8, copy=False)

  def __getitem__(self, index: int) -> dict[str, Any]:
    i = self._index(index)
    image_path = self.image_path(i)
    label_path = self.label_path(i)
    # A handful of ADE20K JPEGs are greyscale or CMYK; every item comes out RGB.
    rgb = files.read_image(image_path, self.max_image_pixels)
    raw = self._read_label(label_path)
    if rgb.shape[:2] != raw.shape:
      raise files.DataError(f'ADE20K: image {image_path} is {rgb.shape[0]}x{rgb.shape[1]} (shape '
                            f'{rgb.shape}) but its annotation {label_path} is {raw.shape[0]}x'
                            f'{raw.shape[1]} (shape {raw.shape}); they must have the same height '
                            f'and width.')
    return {
        'image': rgb,
        'label': reduce_zero_label(raw, self.ignore_index),
        'index': i,
    }


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """The 150 classes and mmseg's palette, whatever config.data says."""
  del data
  return CLASS_NAMES, PALETTE


def from_config(data: Any, split: str, seed: int = 0) -> ADE20KSource:
  """The source of `split` for config.data (root, ignore_index); `seed` is not used."""
  del seed
  return ADE20KSource(data.root, split, ignore_index=data.ignore_index)


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, num_train: int = 4, num_val: int = 3,
                       sizes: Optional[Sequence[tuple[int, int]]] = None) -> str:
  """Writes a tiny ADEChallengeData2016 tree under `directory`; returns its path (the root).

  For each split of config.data.train_split / eval_split (or `splits`): images/<dir>/
  ADE_<train|val>_0000000k.jpg RGB JPEGs (k from 1; num_train or num_val of them) and
  annotations/<dir>/ADE_..._0000000k.png single-channel 8-bit PNGs (mode L) holding every raw
  value 0..150 (0 = unlabelled) in square regions. The k-th image written (from 0, train before
  val) is sizes[k % len(sizes)] (H, W), by default files.EXAMPLE_SIZES: landscape and portrait.
  """
  chosen = files.example_splits(data, tuple(SPLITS), 'ADE20K', splits)
  sizes = tuple(sizes) if sizes is not None else files.EXAMPLE_SIZES
  rng = np.random.default_rng(seed)
  base = os.path.join(directory, DIRNAME)
  count = 0
  for split, prefix, num in (('train', 'train', num_train), ('val', 'val', num_val)):
    if split not in chosen:
      continue
    image_dir = os.path.join(base, 'images', SPLITS[split])
    label_dir = os.path.join(base, 'annotations', SPLITS[split])
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    for k in range(1, num + 1):
      regions = files.example_regions(rng, sizes[count % len(sizes)], NUM_CLASSES + 1)
      count += 1
      stem = f'ADE_{prefix}_{k:08d}'
      files.save_image(os.path.join(image_dir, stem + IMAGE_SUFFIX),
                       files.example_image(rng, regions))
      files.save_label(os.path.join(label_dir, stem + LABEL_SUFFIX), regions)  # Raw = region.
  return base
