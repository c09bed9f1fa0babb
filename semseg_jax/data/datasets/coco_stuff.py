"""COCO-Stuff (171 thing and stuff classes), both partitions, read from their released layouts.

config.data.root is the `coco` directory; config.data.variant picks the partition: '164k' (the
default, also for '') or '10k'.

164k: the COCO 2017 images with the stuffthingmaps_trainval2017.zip annotations:

    coco/                                     <- config.data.root
      images/{train2017,val2017}/<id>.jpg      RGB JPEG (<id>: 12 digits, e.g. 000000000009)
      annotations/{train2017,val2017}/<id>.png                8-bit raw stuffthingmaps
                                      <id>_labelTrainIds.png   (optional, mmseg's conversion)

  Splits: 'train' -> train2017 (118287 images), 'val' -> val2017 (5000). A raw PNG holds
  labels.txt id - 1 (0 = person .. 181 = wood) and 255 for unlabeled. 11 thing ids have no
  annotations in the release (RAW_UNUSED_THING_IDS: street sign, hat, shoe, eye glasses, plate,
  mirror, window, desk, door, blender, hair brush) and no class here; the other 171 raw ids keep
  their order as classes 0..170 (RAW_ID_TO_CLASS) and 255 becomes ignore_index. An unused id, or
  any other value, in a label is a DataError. When every image of a split has a
  `<id>_labelTrainIds.png` (written next to the raw PNGs by mmsegmentation's
  tools/dataset_converters/coco_stuff164k.py: 0..170, 255 ignored) those are read instead.

10k: the cocostuff-10k-v1.1 release (all images from COCO train2014) in mmsegmentation's
converted layout (tools/dataset_converters/coco_stuff10k.py turns the release's
annotations/<name>.mat and imageLists/{train,test}.txt into it):

    coco/                                     <- config.data.root
      images/{train2014,test2014}/<name>.jpg             <name>: COCO_train2014_000000000077
      annotations/{train2014,test2014}/<name>_labelTrainIds.png      8-bit, 0..171

  Splits: 'train' -> train2014 (9000 images); 'test' and 'val' -> test2014 (1000): the release
  splits 9k/1k only (imageLists/test.txt, which its README calls val), so evaluation uses that
  split under either name, as mmseg's config does.
  A label holds 1..171 for classes 0..170 and 0 for unlabeled (mmseg's reduce_zero_label
  convention): k -> k - 1, 0 and 255 -> ignore_index. The original .mat files are not read.

Both partitions share the 171 classes, in labels.txt order without the 11 unused ids; names and
palette follow mmsegmentation's COCOStuffDataset (its palette repeats a few colours).
"""

import logging
import os
import shutil
from typing import Any, Optional, Sequence

import numpy as np

from semseg_jax.data.datasets import files

CLASS_NAMES: tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush', 'banner', 'blanket', 'branch', 'bridge',
    'building-other', 'bush', 'cabinet', 'cage', 'cardboard', 'carpet', 'ceiling-other',
    'ceiling-tile', 'cloth', 'clothes', 'clouds', 'counter', 'cupboard', 'curtain', 'desk-stuff',
    'dirt', 'door-stuff', 'fence', 'floor-marble', 'floor-other', 'floor-stone', 'floor-tile',
    'floor-wood', 'flower', 'fog', 'food-other', 'fruit', 'furniture-other', 'grass', 'gravel',
    'ground-other', 'hill', 'house', 'leaves', 'light', 'mat', 'metal', 'mirror-stuff', 'moss',
    'mountain', 'mud', 'napkin', 'net', 'paper', 'pavement', 'pillow', 'plant-other', 'plastic',
    'platform', 'playingfield', 'railing', 'railroad', 'river', 'road', 'rock', 'roof', 'rug',
    'salad', 'sand', 'sea', 'shelf', 'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs',
    'stone', 'straw', 'structural-other', 'table', 'tent', 'textile-other', 'towel', 'tree',
    'vegetable', 'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel', 'wall-stone',
    'wall-tile', 'wall-wood', 'water-other', 'waterdrops', 'window-blind', 'window-other', 'wood')
PALETTE = np.array([
    [0, 192, 64], [0, 192, 64], [0, 64, 96], [128, 192, 192], [0, 64, 64], [0, 192, 224],
    [0, 192, 192], [128, 192, 64], [0, 192, 96], [128, 192, 64], [128, 32, 192], [0, 0, 224],
    [0, 0, 64], [0, 160, 192], [128, 0, 96], [128, 0, 192], [0, 32, 192], [128, 128, 224],
    [0, 0, 192], [128, 160, 192], [128, 128, 0], [128, 0, 32], [128, 32, 0], [128, 0, 128],
    [64, 128, 32], [0, 160, 0], [0, 0, 0], [192, 128, 160], [0, 32, 0], [0, 128, 128],
    [64, 128, 160], [128, 160, 0], [0, 128, 0], [192, 128, 32], [128, 96, 128], [0, 0, 128],
    [64, 0, 32], [0, 224, 128], [128, 0, 0], [192, 0, 160], [0, 96, 128], [128, 128, 128],
    [64, 0, 160], [128, 224, 128], [128, 128, 64], [192, 0, 32], [128, 96, 0], [128, 0, 192],
    [0, 128, 32], [64, 224, 0], [0, 0, 64], [128, 128, 160], [64, 96, 0], [0, 128, 192],
    [0, 128, 160], [192, 224, 0], [0, 128, 64], [128, 128, 32], [192, 32, 128], [0, 64, 192],
    [0, 0, 32], [64, 160, 128], [128, 64, 64], [128, 0, 160], [64, 32, 128], [128, 192, 192],
    [0, 0, 160], [192, 160, 128], [128, 192, 0], [128, 0, 96], [192, 32, 0], [128, 64, 128],
    [64, 128, 96], [64, 160, 0], [0, 64, 0], [192, 128, 224], [64, 32, 0], [0, 192, 128],
    [64, 128, 224], [192, 160, 0], [0, 192, 0], [192, 128, 96], [192, 96, 128], [0, 64, 128],
    [64, 0, 96], [64, 224, 128], [128, 64, 0], [192, 0, 224], [64, 96, 128], [128, 192, 128],
    [64, 0, 224], [192, 224, 128], [128, 192, 64], [192, 0, 96], [192, 96, 0], [128, 64, 192],
    [0, 128, 96], [0, 224, 0], [64, 64, 64], [128, 128, 224], [0, 96, 0], [64, 192, 192],
    [0, 128, 224], [128, 224, 0], [64, 192, 64], [128, 128, 96], [128, 32, 128], [64, 0, 192],
    [0, 64, 96], [0, 160, 128], [192, 0, 64], [128, 64, 224], [0, 32, 128], [192, 128, 192],
    [0, 64, 224], [128, 160, 128], [192, 128, 0], [128, 64, 32], [128, 32, 64], [192, 0, 128],
    [64, 192, 32], [0, 160, 64], [64, 0, 0], [192, 192, 160], [0, 32, 64], [64, 128, 128],
    [64, 192, 160], [128, 160, 64], [64, 128, 0], [192, 192, 32], [128, 96, 192], [64, 0, 128],
    [64, 64, 32], [0, 224, 192], [192, 0, 0], [192, 64, 160], [0, 96, 192], [192, 128, 128],
    [64, 64, 160], [128, 224, 192], [192, 128, 64], [192, 64, 32], [128, 96, 64], [192, 0, 192],
    [0, 192, 32], [64, 224, 64], [64, 0, 64], [128, 192, 160], [64, 96, 64], [64, 128, 192],
    [0, 192, 160], [192, 224, 64], [64, 128, 64], [128, 192, 32], [192, 32, 192], [64, 64, 192],
    [0, 64, 32], [64, 160, 192], [192, 64, 64], [128, 64, 160], [64, 32, 192], [192, 192, 192],
    [0, 64, 160], [192, 160, 192], [192, 192, 0], [128, 64, 96], [192, 32, 64], [192, 64, 128],
    [64, 192, 96], [64, 160, 64], [64, 64, 0]], np.uint8)
PALETTE.setflags(write=False)
NUM_CLASSES = len(CLASS_NAMES)

VARIANTS = ('164k', '10k')
DEFAULT_VARIANT = '164k'

# Raw stuffthingmaps values (labels.txt id - 1) of the 11 thing classes never annotated.
RAW_UNUSED_THING_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
NUM_RAW_IDS = 182  # 0..181; 255 is unlabeled.
RAW_UNLABELED = 255
# Raw 164k value -> class: the used ids 0..181 in increasing order are classes 0..170.
RAW_ID_TO_CLASS: dict[int, int] = {
    raw: cls for cls, raw in enumerate(
        r for r in range(NUM_RAW_IDS) if r not in RAW_UNUSED_THING_IDS)}

# Split -> directory under images/ and annotations/.
SPLIT_DIRS = {
    '164k': {'train': 'train2017', 'val': 'val2017'},
    '10k': {'train': 'train2014', 'val': 'test2014', 'test': 'test2014'},
}
IMAGE_SUFFIX = '.jpg'
RAW_LABEL_SUFFIX = '.png'
TRAIN_ID_SUFFIX = '_labelTrainIds.png'
_TRAIN_ID_STEM_END = TRAIN_ID_SUFFIX[:-len(RAW_LABEL_SUFFIX)]  # '_labelTrainIds'

assert len(CLASS_NAMES) == len(RAW_ID_TO_CLASS) == 171 and PALETTE.shape == (NUM_CLASSES, 3)

_LAYOUT_164K = (
    ' COCO-Stuff 164k expects images/{train2017,val2017}/<id>.jpg (COCO 2017 train2017.zip and '
    'val2017.zip unzipped into images/) and annotations/{train2017,val2017}/<id>.png '
    '(stuffthingmaps_trainval2017.zip unzipped into annotations/) under root.')
_LAYOUT_10K = (
    ' COCO-Stuff 10k is read in the converted layout images/{train2014,test2014}/<name>.jpg '
    'with annotations/{train2014,test2014}/<name>_labelTrainIds.png (1..171, 0 unlabeled) under '
    'root; the original cocostuff-10k-v1.1 release (images/<name>.jpg, annotations/<name>.mat, '
    'imageLists/{train,test}.txt) must first be converted to it, e.g. with mmsegmentation\'s '
    '`python tools/dataset_converters/coco_stuff10k.py <root>`.')


def check_variant(variant: Any) -> str:
  """config.data.variant as a partition name: '' (or None) -> '164k'; ValueError otherwise."""
  value = files.optional_str(variant)
  if value == '':
    return DEFAULT_VARIANT
  if value not in VARIANTS:
    raise ValueError(f'COCO-Stuff: config.data.variant={variant!r} is not a partition; expected '
                     f'one of {VARIANTS} (\'\' means {DEFAULT_VARIANT!r}).')
  return value


def raw_label_map(ignore_index: int) -> files.LabelMap:
  """Raw 164k stuffthingmaps values -> classes: RAW_ID_TO_CLASS, 255 -> ignore_index; the
  unused thing ids (and anything else) are not in the table, so they raise DataError."""
  return files.LabelMap({**RAW_ID_TO_CLASS, RAW_UNLABELED: ignore_index}, NUM_CLASSES,
                        ignore_index)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """The 171 class names and palette; the same for both partitions (the variant is checked)."""
  check_variant(data.variant)
  return CLASS_NAMES, PALETTE


def _missing_dirs_hint(root: str, variant: str, split: str) -> str:
  """Why a split's directories may be missing (another partition, another root) and the layout
  expected; for 10k this says that the original .mat release must be converted first."""
  hint = ''
  other = '10k' if variant == '164k' else '164k'
  other_dir = SPLIT_DIRS[other].get(split)
  if other_dir and os.path.isdir(os.path.join(root, 'images', other_dir)):
    hint = (f' root holds images/{other_dir} of the COCO-Stuff {other} partition: set '
            f'config.data.variant={other!r}?')
  for child in ('coco', 'coco_stuff164k', 'coco_stuff10k'):
    if not hint and os.path.isdir(os.path.join(root, child, 'images')):
      hint = f' root should be {os.path.join(root, child)}?'
  return hint + (_LAYOUT_164K if variant == '164k' else _LAYOUT_10K)


def _labels_164k(label_dir: str, images: dict[str, str], split: str
                 ) -> tuple[dict[str, str], bool]:
  """(stem -> label path, whether they are mmseg's train-id PNGs) of a 164k split."""
  train_ids = files.list_files(label_dir, TRAIN_ID_SUFFIX)
  if train_ids and images.keys() <= train_ids.keys():
    return train_ids, True
  if train_ids:
    logging.warning('COCO-Stuff 164k %s: %d of %d images have a *%s; reading the raw '
                    'stuffthingmaps *%s for all of them.', split,
                    len(images.keys() & train_ids.keys()), len(images), TRAIN_ID_SUFFIX,
                    RAW_LABEL_SUFFIX)
  # '<id>_labelTrainIds.png' also ends with '.png': it is no raw label of an image '<id>_...'.
  raw = files.list_files(label_dir, RAW_LABEL_SUFFIX)
  return {k: v for k, v in raw.items() if not k.endswith(_TRAIN_ID_STEM_END)}, False


def make_source(root: str, split: str, ignore_index: int = 255,
                variant: str = DEFAULT_VARIANT) -> files.FileSource:
  """The COCO-Stuff `split` of partition `variant` ('164k' or '10k') under `root` (the `coco`
  directory holding images/ and annotations/)."""
  variant = check_variant(variant)
  name = f'COCO-Stuff {variant}'
  split_dirs = SPLIT_DIRS[variant]
  if split not in split_dirs:
    raise ValueError(f'{name}: unknown split {split!r}; expected one of {tuple(split_dirs)}.')
  ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, name)
  image_dir = os.path.join(root, 'images', split_dirs[split])
  label_dir = os.path.join(root, 'annotations', split_dirs[split])
  if not (os.path.isdir(image_dir) and os.path.isdir(label_dir)):
    files.require_dirs(name, split, image_dir, label_dir,
                       hint=_missing_dirs_hint(root, variant, split))
  images = files.list_files(image_dir, IMAGE_SUFFIX)
  if not images:
    raise ValueError(f'{name}: split {split!r} has no *{IMAGE_SUFFIX} images in {image_dir}.')
  if variant == '164k':
    labels, converted = _labels_164k(label_dir, images, split)
    label_map = (files.LabelMap.identity(NUM_CLASSES, ignore_index) if converted
                 else raw_label_map(ignore_index))
  else:
    labels = files.list_files(label_dir, TRAIN_ID_SUFFIX)
    label_map = files.LabelMap.zero_ignored(NUM_CLASSES, ignore_index,
                                            raw_ignore=(RAW_UNLABELED,))
  stems = files.pair_files(name, images, labels, image_dir, label_dir)
  return files.FileSource(name, split, stems, [images[s] for s in stems],
                          [labels[s] for s in stems], label_map, CLASS_NAMES, PALETTE)


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data (root, ignore_index, variant); `seed` is not used."""
  del seed
  return make_source(files.optional_str(data.root), split, data.ignore_index, data.variant)


# Image names of an example tree, by directory of each partition.
EXAMPLE_STEMS = {
    '164k': {'train2017': ('000000000009', '000000000025'),
             'val2017': ('000000000139', '000000000285')},
    '10k': {'train2014': ('COCO_train2014_000000000077', 'COCO_train2014_000000000109'),
            'test2014': ('COCO_train2014_000000000250', 'COCO_train2014_000000000307')},
}
_10K_LISTS = {'train2014': 'train.txt', 'test2014': 'test.txt'}  # The release's imageLists/.


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, train_ids: bool = False, converted: bool = True) -> str:
  """Writes a tiny `coco` tree of the partition config.data.variant picks under `directory`;
  returns its path (the root). Files are written for the directories of config.data.
  train_split / eval_split (or `splits`), with the images of EXAMPLE_STEMS:

  164k: images/<dir>/<id>.jpg and annotations/<dir>/<id>.png, raw stuffthingmaps (8-bit, mode
    L) holding every used raw id (0..181 without RAW_UNUSED_THING_IDS) and 255; with
    `train_ids`, mmseg's <id>_labelTrainIds.png (0..170, 255) beside them.
  10k: the cocostuff-10k-v1.1 release, images/<name>.jpg, annotations/<name>.mat (S: uint16,
    0 = unlabeled, labels.txt ids 1..182, every used one) and imageLists/{train,test}.txt;
    with `converted` (default) also mmseg's conversion read here: images/<dir>/<name>.jpg and
    annotations/<dir>/<name>_labelTrainIds.png (0 unlabeled, class + 1; the last three pixels
    255).
  Sizes: files.EXAMPLE_SIZES.
  """
  variant = check_variant(data.variant)
  chosen = files.example_splits(data, tuple(SPLIT_DIRS[variant]), f'COCO-Stuff {variant}',
                                splits)
  directories = tuple(dict.fromkeys(SPLIT_DIRS[variant][split] for split in chosen))
  rng = np.random.default_rng(seed)
  base = os.path.join(directory, 'coco')
  used = np.array(sorted(RAW_ID_TO_CLASS), np.int64)  # Raw 164k ids of classes 0..170.
  count = 0
  for split_dir in directories:
    if variant == '10k':
      files.write_lines(os.path.join(base, 'imageLists', _10K_LISTS[split_dir]),
                        EXAMPLE_STEMS[variant][split_dir])
    for stem in EXAMPLE_STEMS[variant][split_dir]:
      # Region k < 171 is class k; region 171 is unlabeled.
      regions = files.example_regions(rng, files.example_size(count), NUM_CLASSES + 1)
      count += 1
      image = files.example_image(rng, regions)
      if variant == '164k':
        files.save_image(os.path.join(base, 'images', split_dir, stem + IMAGE_SUFFIX), image)
        raw = np.append(used, RAW_UNLABELED)[regions].astype(np.uint8)
        label_dir = os.path.join(base, 'annotations', split_dir)
        files.save_label(os.path.join(label_dir, stem + RAW_LABEL_SUFFIX), raw)
        if train_ids:
          train_id = np.where(regions == NUM_CLASSES, RAW_UNLABELED, regions)
          files.save_label(os.path.join(label_dir, stem + TRAIN_ID_SUFFIX),
                           train_id.astype(np.uint8))
        continue
      release_image = os.path.join(base, 'images', stem + IMAGE_SUFFIX)
      files.save_image(release_image, image)
      mat_ids = np.where(regions == NUM_CLASSES, 0, np.append(used, 0)[regions] + 1)
      _save_mat(os.path.join(base, 'annotations', stem + '.mat'), mat_ids.astype(np.uint16))
      if converted:
        os.makedirs(os.path.join(base, 'images', split_dir), exist_ok=True)
        shutil.copyfile(release_image, os.path.join(base, 'images', split_dir,
                                                    stem + IMAGE_SUFFIX))
        label = np.where(regions == NUM_CLASSES, 0, regions + 1)
        label[-1, -3:] = RAW_UNLABELED
        files.save_label(os.path.join(base, 'annotations', split_dir, stem + TRAIN_ID_SUFFIX),
                         label.astype(np.uint8))
  return base


def _save_mat(path: str, mat_ids: np.ndarray) -> None:
  from scipy import io as scipy_io  # Only the 10k release's .mat files need scipy.
  os.makedirs(os.path.dirname(path), exist_ok=True)
  scipy_io.savemat(path, {'S': mat_ids})
