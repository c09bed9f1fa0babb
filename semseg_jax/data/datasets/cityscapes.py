"""Cityscapes (fine annotations), read straight from the release's two archives.

    cityscapes/                                   <- config.data.root
      leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   RGB PNG
      gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png    8-bit ids
                                               ..._gtFine_labelTrainIds.png       (optional)

Training and evaluation use the 19 evaluated classes (trainIds). When every image of a split
has a `*_labelTrainIds.png` (written by cityscapesScripts' createTrainIdLabelImgs) those are
read (0..18, 255 ignored); otherwise the released `*_labelIds.png` are mapped with the official
34 -> 19 table, every id outside the 19 classes becoming the ignore label. 2975 / 500 / 1525
images in train / val / test (test labels are withheld: all ignore).
"""

import logging
import os
from typing import Any, Optional, Sequence

import numpy as np

from semseg_jax.data.datasets import files

CLASS_NAMES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
               'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
               'bus', 'train', 'motorcycle', 'bicycle')
PALETTE = np.array([
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
    [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
    [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
    [0, 80, 100], [0, 0, 230], [119, 11, 32]], np.uint8)
NUM_CLASSES = len(CLASS_NAMES)

# labelId -> trainId of the 19 evaluated classes (cityscapesScripts' labels.py); the other
# ids 0..33 (unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge, tunnel,
# polegroup, caravan, trailer) are ignored.
LABEL_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                        23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34

SPLITS = ('train', 'val', 'test')
IMAGE_SUFFIX = '_leftImg8bit.png'
TRAIN_ID_SUFFIX = '_gtFine_labelTrainIds.png'
LABEL_ID_SUFFIX = '_gtFine_labelIds.png'


def label_id_map(ignore_index: int) -> files.LabelMap:
  """The official labelIds (0..33) -> trainIds table; unlisted ids -> ignore_index."""
  table = {i: LABEL_ID_TO_TRAIN_ID.get(i, ignore_index) for i in range(NUM_LABEL_IDS)}
  return files.LabelMap(table, NUM_CLASSES, ignore_index)


def make_source(root: str, split: str, ignore_index: int = 255) -> files.FileSource:
  """The Cityscapes `split` under `root` (the directory holding leftImg8bit/ and gtFine/)."""
  name = 'Cityscapes'
  if split not in SPLITS:
    raise ValueError(f'{name}: unknown split {split!r}; expected one of {SPLITS}.')
  ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, name)
  image_dir = os.path.join(root, 'leftImg8bit', split)
  label_dir = os.path.join(root, 'gtFine', split)
  hint = ''
  if os.path.isdir(os.path.join(root, 'cityscapes', 'leftImg8bit')):
    hint = f' root should be {os.path.join(root, "cityscapes")}.'
  files.require_dirs(name, split, image_dir, label_dir, hint=hint)
  images = files.list_files(image_dir, IMAGE_SUFFIX, recursive=True)
  if not images:
    raise ValueError(f'{name}: no *{IMAGE_SUFFIX} images under {image_dir}/<city>/.')
  train_ids = files.list_files(label_dir, TRAIN_ID_SUFFIX, recursive=True)
  if train_ids and images.keys() <= train_ids.keys():
    labels, label_map = train_ids, files.LabelMap.identity(NUM_CLASSES, ignore_index)
  else:
    if train_ids:
      logging.warning('%s %s: %d of %d images have a *%s; reading *%s for all of them.', name,
                      split, len(images.keys() & train_ids.keys()), len(images),
                      TRAIN_ID_SUFFIX, LABEL_ID_SUFFIX)
    labels, label_map = (files.list_files(label_dir, LABEL_ID_SUFFIX, recursive=True),
                         label_id_map(ignore_index))
    train_ids = {k: v for k, v in train_ids.items() if k in labels}  # Not orphans either.
  keys = files.pair_files(name, images, labels, image_dir, label_dir)
  return files.FileSource(name, split, [k.rsplit('/', 1)[-1] for k in keys],
                          [images[k] for k in keys], [labels[k] for k in keys], label_map,
                          CLASS_NAMES, PALETTE)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """The 19 evaluated classes and their colours, whatever config.data says."""
  del data
  return CLASS_NAMES, PALETTE


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data (root, ignore_index); `seed` is not used."""
  del seed
  return make_source(files.optional_str(data.root), split, data.ignore_index)


# Cities of an example tree, as in the release (test labels are withheld: ids 0..3 only).
EXAMPLE_CITIES = {'train': ('aachen', 'bochum'), 'val': ('frankfurt',), 'test': ('berlin',)}
EXAMPLE_FRAMES = (19, 123)
_WITHHELD_IDS = 4  # 0 unlabeled, 1 ego vehicle, 2 rectification border, 3 out of roi.


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, train_ids: bool = False) -> str:
  """Writes a tiny `cityscapes` tree under `directory`; returns its path (the root).

  For each split of config.data.train_split / eval_split (or `splits`), two frames per city of
  EXAMPLE_CITIES: leftImg8bit/<split>/<city>/<city>_000000_<frame>_leftImg8bit.png RGB PNGs
  and gtFine/<split>/<city>/..._gtFine_labelIds.png 8-bit labelIds holding every id 0..33 (test:
  ids 0..3, as released), with the ..._gtFine_color.png beside them; with `train_ids`, also
  cityscapesScripts' ..._gtFine_labelTrainIds.png (0..18, 255). Sizes: files.EXAMPLE_SIZES.
  """
  chosen = files.example_splits(data, SPLITS, 'Cityscapes', splits)
  rng = np.random.default_rng(seed)
  base = os.path.join(directory, 'cityscapes')
  to_train_id = label_id_map(255).lut.astype(np.uint8)
  colours = np.zeros((256, 3), np.uint8)
  colours[list(LABEL_ID_TO_TRAIN_ID)] = PALETTE[list(LABEL_ID_TO_TRAIN_ID.values())]
  count = 0
  for split in chosen:
    for city in EXAMPLE_CITIES[split]:
      image_dir = os.path.join(base, 'leftImg8bit', split, city)
      label_dir = os.path.join(base, 'gtFine', split, city)
      for frame in EXAMPLE_FRAMES:
        stem = f'{city}_000000_{frame:06d}'
        ids = files.example_regions(rng, files.example_size(count),
                                    _WITHHELD_IDS if split == 'test' else NUM_LABEL_IDS)
        count += 1
        files.save_image(os.path.join(image_dir, stem + IMAGE_SUFFIX),
                         files.example_image(rng, ids))
        files.save_label(os.path.join(label_dir, stem + LABEL_ID_SUFFIX), ids)
        files.save_label(os.path.join(label_dir, stem + '_gtFine_color.png'), colours[ids])
        if train_ids:
          files.save_label(os.path.join(label_dir, stem + TRAIN_ID_SUFFIX), to_train_id[ids])
  return base
