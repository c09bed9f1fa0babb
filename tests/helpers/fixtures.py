"""Tiny on-disk dataset trees for tests, written with the real releases' layout and encodings."""

import pathlib
from typing import Optional, Sequence

import numpy as np
from PIL import Image

# (H, W): landscape, portrait, square, odd landscape, odd portrait.
_ADE20K_SIZES = ((48, 64), (72, 40), (56, 56), (37, 53), (61, 45))


def make_ade20k_tree(root: pathlib.Path, num_train: int = 4, num_val: int = 3, seed: int = 0,
                     sizes: Optional[Sequence[tuple[int, int]]] = None) -> pathlib.Path:
  """Writes a tiny ADEChallengeData2016 tree under `root` and returns its path.

  images/{training,validation}/ADE_{train,val}_0000000k.jpg are RGB JPEGs and
  annotations/.../ADE_..._0000000k.png single-channel 8-bit PNGs (mode L) with values 0..150,
  0 meaning unlabelled. Every annotation contains 0, 1 and 150. Image k of a split (k from 0, train
  then val) is sizes[k % len(sizes)] (H, W); the default sizes mix landscape and portrait.
  """
  sizes = tuple(sizes) if sizes is not None else _ADE20K_SIZES
  rng = np.random.default_rng(seed)
  base = pathlib.Path(root) / 'ADEChallengeData2016'
  count = 0
  for split_dir, prefix, num in (('training', 'train', num_train),
                                 ('validation', 'val', num_val)):
    image_dir = base / 'images' / split_dir
    label_dir = base / 'annotations' / split_dir
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for k in range(1, num + 1):
      height, width = sizes[count % len(sizes)]
      count += 1
      # Blocky regions of random classes, like objects, plus the extreme values somewhere.
      cells = rng.integers(0, 151, size=(-(-height // 8), -(-width // 8)), dtype=np.uint8)
      label = np.kron(cells, np.ones((8, 8), dtype=np.uint8))[:height, :width]
      label[0, 0], label[0, -1], label[-1, 0] = 0, 150, 1
      image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
      stem = f'ADE_{prefix}_{k:08d}'
      Image.fromarray(image).save(image_dir / f'{stem}.jpg', format='JPEG', quality=90)
      Image.fromarray(label).save(label_dir / f'{stem}.png', format='PNG')
  return base


# cityscapesScripts labels.py, written out here on its own: (labelId, trainId) for ids 0..33.
ID_TO_TRAIN_ID = [
    (0, 255), (1, 255), (2, 255), (3, 255), (4, 255), (5, 255), (6, 255), (7, 0), (8, 1),
    (9, 255), (10, 255), (11, 2), (12, 3), (13, 4), (14, 255), (15, 255), (16, 255), (17, 5),
    (18, 255), (19, 6), (20, 7), (21, 8), (22, 9), (23, 10), (24, 11), (25, 12), (26, 13),
    (27, 14), (28, 15), (29, 255), (30, 255), (31, 16), (32, 17), (33, 18)]
CITIES = {'train': ('aachen', 'bochum'), 'val': ('frankfurt',)}


def make_cityscapes_tree(root: pathlib.Path, train_ids: bool = False, size=(24, 48),
                         seed: int = 0) -> pathlib.Path:
  """cityscapes/{leftImg8bit,gtFine}/<split>/<city>/ with two frames per city: RGB PNG images,
  8-bit labelIds PNGs holding every id 0..33, and (train_ids) their labelTrainIds PNGs."""
  rng = np.random.default_rng(seed)
  base = root / 'cityscapes'
  for split, cities in CITIES.items():
    for city in cities:
      for frame in (19, 123):
        stem = f'{city}_000000_{frame:06d}'
        image_dir = base / 'leftImg8bit' / split / city
        label_dir = base / 'gtFine' / split / city
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        ids = rng.integers(0, 34, size=size).astype(np.uint8)
        ids.flat[:34] = np.arange(34)
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(
            image_dir / f'{stem}_leftImg8bit.png')
        Image.fromarray(ids).save(label_dir / f'{stem}_gtFine_labelIds.png')
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(label_dir / f'{stem}_gtFine_color.png')
        if train_ids:
          table = dict(ID_TO_TRAIN_ID)
          trainid = np.vectorize(table.get)(ids).astype(np.uint8)
          Image.fromarray(trainid).save(label_dir / f'{stem}_gtFine_labelTrainIds.png')
  return base
