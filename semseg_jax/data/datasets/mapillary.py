"""Mapillary Vistas v1.2 (65 classes), read straight from the release directory.

    vistas/                                      <- config.data.root
      config_v1.2.json  config_v2.0.json
      training/images/<key>.jpg                  RGB JPEG (key: a 22-character id)
      training/v1.2/labels/<key>.png             8-bit palette PNG, pixel = label index 0..65
      validation/images/<key>.jpg, validation/v1.2/labels/<key>.png
      testing/images/<key>.jpg                   (no labels)

Splits: 'train' -> training/, 'val' -> validation/ (18000 / 2000 images); 'testing' has no
labels and is not offered. A label's stem is its image's key.

A label pixel is an index into `labels` of config_v1.2.json, whatever colours the PNG's palette
shows: the palette indices are read, never the colours. Indices 0..64 are the 65 evaluated
classes (kept as they are; 'Car Mount' and 'Ego Vehicle' included) and 65 'Unlabeled' becomes
`ignore_index`, as in mmseg's mapillary_v1_65 and Mask2Former; any value above 65 is an error
naming the file.

The older v1.1-style flat layout `<split>/labels/<key>.png` (no version folder; what
Mask2Former expects) is read when `<split>/v1.2/labels` does not exist; v1.2/labels wins when
both do. The v2.0 labels (124 classes) are a different label set and are never read.
"""

import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from semseg_jax.data.datasets import files

# (readable name, (r, g, b)) in config_v1.2.json order, without the last entry 'Unlabeled'.
_CLASSES = (
    ('Bird', (165, 42, 42)), ('Ground Animal', (0, 192, 0)), ('Curb', (196, 196, 196)),
    ('Fence', (190, 153, 153)), ('Guard Rail', (180, 165, 180)), ('Barrier', (90, 120, 150)),
    ('Wall', (102, 102, 156)), ('Bike Lane', (128, 64, 255)),
    ('Crosswalk - Plain', (140, 140, 200)), ('Curb Cut', (170, 170, 170)),
    ('Parking', (250, 170, 160)), ('Pedestrian Area', (96, 96, 96)),
    ('Rail Track', (230, 150, 140)), ('Road', (128, 64, 128)), ('Service Lane', (110, 110, 110)),
    ('Sidewalk', (244, 35, 232)), ('Bridge', (150, 100, 100)), ('Building', (70, 70, 70)),
    ('Tunnel', (150, 120, 90)), ('Person', (220, 20, 60)), ('Bicyclist', (255, 0, 0)),
    ('Motorcyclist', (255, 0, 100)), ('Other Rider', (255, 0, 200)),
    ('Lane Marking - Crosswalk', (200, 128, 128)), ('Lane Marking - General', (255, 255, 255)),
    ('Mountain', (64, 170, 64)), ('Sand', (230, 160, 50)), ('Sky', (70, 130, 180)),
    ('Snow', (190, 255, 255)), ('Terrain', (152, 251, 152)), ('Vegetation', (107, 142, 35)),
    ('Water', (0, 170, 30)), ('Banner', (255, 255, 128)), ('Bench', (250, 0, 30)),
    ('Bike Rack', (100, 140, 180)), ('Billboard', (220, 220, 220)),
    ('Catch Basin', (220, 128, 128)), ('CCTV Camera', (222, 40, 40)),
    ('Fire Hydrant', (100, 170, 30)), ('Junction Box', (40, 40, 40)), ('Mailbox', (33, 33, 33)),
    ('Manhole', (100, 128, 160)), ('Phone Booth', (142, 0, 0)), ('Pothole', (70, 100, 150)),
    ('Street Light', (210, 170, 100)), ('Pole', (153, 153, 153)),
    ('Traffic Sign Frame', (128, 128, 128)), ('Utility Pole', (0, 0, 80)),
    ('Traffic Light', (250, 170, 30)), ('Traffic Sign (Back)', (192, 192, 192)),
    ('Traffic Sign (Front)', (220, 220, 0)), ('Trash Can', (140, 140, 20)),
    ('Bicycle', (119, 11, 32)), ('Boat', (150, 0, 255)), ('Bus', (0, 60, 100)),
    ('Car', (0, 0, 142)), ('Caravan', (0, 0, 90)), ('Motorcycle', (0, 0, 230)),
    ('On Rails', (0, 80, 100)), ('Other Vehicle', (128, 64, 64)), ('Trailer', (0, 0, 110)),
    ('Truck', (0, 0, 70)), ('Wheeled Slow', (0, 0, 192)), ('Car Mount', (32, 32, 32)),
    ('Ego Vehicle', (120, 10, 10)))

CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in _CLASSES)
PALETTE: np.ndarray = np.array([colour for _, colour in _CLASSES], np.uint8)
PALETTE.setflags(write=False)
NUM_CLASSES = len(CLASS_NAMES)
UNLABELED = 65  # Raw label index of 'Unlabeled' (void--unlabeled, colour (0, 0, 0)).

assert NUM_CLASSES == 65 and PALETTE.shape == (NUM_CLASSES, 3)

SPLITS = {'train': 'training', 'val': 'validation'}
IMAGE_SUFFIX = '.jpg'
LABEL_SUFFIX = '.png'
VERSIONED_LABEL_DIR = os.path.join('v1.2', 'labels')
FLAT_LABEL_DIR = 'labels'


def label_map(ignore_index: int) -> files.LabelMap:
  """Raw indices 0..64 -> themselves, 65 (Unlabeled) -> ignore_index, anything else an error."""
  return files.LabelMap.identity(NUM_CLASSES, ignore_index, raw_ignore=(UNLABELED,))


def label_dir(split_dir: str) -> str:
  """`<split>/v1.2/labels` when it exists, else the flat `<split>/labels`."""
  versioned = os.path.join(split_dir, VERSIONED_LABEL_DIR)
  return versioned if os.path.isdir(versioned) else os.path.join(split_dir, FLAT_LABEL_DIR)


def _root_hint(root: str, split_dir_name: str) -> str:
  """A sentence for a root that is near the release directory but is not it; '' otherwise."""
  name = os.path.basename(os.path.normpath(root))
  if name in SPLITS.values() or name == 'testing':
    return f' root should be the directory above {name}/: {os.path.dirname(root)}.'
  try:
    entries = sorted(os.listdir(root))
  except OSError:  # No such directory, or unreadable: no hint.
    return ''
  for entry in entries:
    if os.path.isdir(os.path.join(root, entry, split_dir_name)):
      return f' root should be {os.path.join(root, entry)}.'
  return ''


def make_source(root: str, split: str, ignore_index: int = 255) -> files.FileSource:
  """The Vistas v1.2 `split` under `root` (the directory holding training/ and validation/)."""
  name = 'Mapillary Vistas v1.2'
  if split not in SPLITS:
    raise ValueError(f'{name}: unknown split {split!r}; expected one of {sorted(SPLITS)} '
                     f'(testing/ has no labels).')
  ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, name)
  if not root:
    raise ValueError(f'{name}: no root given; set config.data.root to the release directory '
                     f'(the one holding training/ and validation/).')
  split_dir = os.path.join(root, SPLITS[split])
  image_dir = os.path.join(split_dir, 'images')
  files.require_dirs(name, split, image_dir, hint=_root_hint(root, SPLITS[split]))
  labels_dir = label_dir(split_dir)
  if not os.path.isdir(labels_dir):
    versioned = os.path.join(split_dir, VERSIONED_LABEL_DIR)
    raise ValueError(f'{name}: split {split!r} needs labels in {versioned} (or, in the older '
                     f'flat layout, {labels_dir}); neither exists.')
  images = files.list_files(image_dir, IMAGE_SUFFIX)
  if not images:
    raise ValueError(f'{name}: no *{IMAGE_SUFFIX} images in {image_dir}.')
  labels = files.list_files(labels_dir, LABEL_SUFFIX)
  keys = files.pair_files(name, images, labels, image_dir, labels_dir)
  return files.FileSource(name, split, keys, [images[k] for k in keys],
                          [labels[k] for k in keys], label_map(ignore_index), CLASS_NAMES,
                          PALETTE)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """The 65 evaluated classes of v1.2 and their colours, whatever config.data says."""
  del data
  return CLASS_NAMES, PALETTE


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data (root, ignore_index); `seed` is not used."""
  del seed
  return make_source(files.optional_str(data.root), split, data.ignore_index)


# Image keys of an example tree (22 characters of [A-Za-z0-9_-], as in the release).
EXAMPLE_KEYS = {'train': ('A1b2C3d4E5f6G7h8I9j0Kk', 'zZyYxXwWvVuUtTsSrRqQpP',
                          '_-0123456789abcdefghij'),
                'val': ('Mm0nN1oO2pP3qQ4rR5sS6t', 'Nn1oO2pP3qQ4rR5sS6tT7u')}
# config_v1.2.json's colours, Unlabeled last: entry k is the colour of label index k.
LABEL_COLOURS: tuple[tuple[int, int, int], ...] = (*(c for _, c in _CLASSES), (0, 0, 0))


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, flat: bool = False) -> str:
  """Writes a tiny Vistas release directory `vistas` under `directory`; returns its path (the
  root).

  config_v1.2.json (`labels`: readable name and colour of indices 0..65) and testing/images/;
  for each split of config.data.train_split / eval_split (or `splits`): <split dir>/images/
  <key>.jpg RGB JPEGs of EXAMPLE_KEYS and <split dir>/v1.2/labels/<key>.png (with `flat`, the
  older <split dir>/labels/) 8-bit palette PNGs (mode P, the colours of LABEL_COLOURS) whose
  indices hold every value 0..65 (65 = Unlabeled). Sizes: files.EXAMPLE_SIZES.
  """
  chosen = files.example_splits(data, tuple(SPLITS), 'Mapillary Vistas v1.2', splits)
  rng = np.random.default_rng(seed)
  base = os.path.join(directory, 'vistas')
  os.makedirs(os.path.join(base, 'testing', 'images'), exist_ok=True)
  labels = [{'readable': name, 'color': list(colour), 'evaluate': True}
            for name, colour in _CLASSES]
  labels.append({'readable': 'Unlabeled', 'color': [0, 0, 0], 'evaluate': False})
  with open(os.path.join(base, 'config_v1.2.json'), 'w') as f:
    json.dump({'labels': labels, 'version': '1.2'}, f)
  count = 0
  for split in chosen:
    split_dir = os.path.join(base, SPLITS[split])
    labels_dir = os.path.join(split_dir, FLAT_LABEL_DIR if flat else VERSIONED_LABEL_DIR)
    # The release's instance PNGs sit in v1.2/instances/; a flat tree keeps that folder too.
    os.makedirs(os.path.join(split_dir, 'v1.2', 'instances'), exist_ok=True)
    for key in EXAMPLE_KEYS[split]:
      indices = files.example_regions(rng, files.example_size(count), UNLABELED + 1)
      count += 1
      files.save_image(os.path.join(split_dir, 'images', key + IMAGE_SUFFIX),
                       files.example_image(rng, indices))
      files.save_label(os.path.join(labels_dir, key + LABEL_SUFFIX), indices.astype(np.uint8),
                       LABEL_COLOURS)
  return base
