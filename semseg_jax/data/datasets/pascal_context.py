"""Pascal Context (VOC2010 images, PASCAL-in-Detail labels) as mmsegmentation prepares it.

    VOCdevkit/                                        <- config.data.root
      VOC2010/
        JPEGImages/<id>.jpg                           RGB JPEG, e.g. 2008_000002.jpg
        SegmentationClassContext/<id>.png             8-bit index PNG, values 0..59
        ImageSets/SegmentationContext/train.txt       4996 ids, one per line
        ImageSets/SegmentationContext/val.txt         5104 ids
        trainval_merged.json                          PASCAL-in-Detail annotations

The PNGs and the split lists are not in the VOC2010 tarball: `convert_detail` (or mmseg's
tools/dataset_converters/pascal_context.py, which writes the same files) paints them from
trainval_merged.json:

    python -m semseg_jax.data.datasets.pascal_context \\
        --json=VOCdevkit/VOC2010/trainval_merged.json --voc=VOCdevkit/VOC2010

A PNG pixel holds 0 for background and k in 1..59 for the k-th of the 60 classes below
(alphabetical, the Detail category ids sorted). config.data.variant picks the convention:
  '59' (default, also ''): 59 classes, background ignored, k -> k - 1 (mmseg's
       PascalContextDataset59, reduce_zero_label);
  '60': 60 classes, background kept as class 0 (mmseg's PascalContextDataset).
A stored 255 is the ignore label in both. Labels are mapped once, here.
"""

import argparse
import collections
import json
import logging
import os
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from semseg_jax.data.datasets import ade20k
from semseg_jax.data.datasets import files

# mmseg's PascalContextDataset classes: the value in a SegmentationClassContext PNG indexes it.
CLASS_NAMES_60: tuple[str, ...] = (
    'background', 'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat',
    'book', 'bottle', 'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth',
    'computer', 'cow', 'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food',
    'grass', 'ground', 'horse', 'keyboard', 'light', 'motorbike', 'mountain', 'mouse', 'person',
    'plate', 'platform', 'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk', 'sign',
    'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree', 'truck', 'tvmonitor', 'wall',
    'water', 'window', 'wood')
# mmseg's Pascal Context palette is ADE20K's first 60 colours.
PALETTE_60: np.ndarray = ade20k.PALETTE[:60]

# mmseg's PascalContextDataset59: the same lists without background.
CLASS_NAMES_59: tuple[str, ...] = CLASS_NAMES_60[1:]
PALETTE_59: np.ndarray = PALETTE_60[1:]

# The Detail category ids of the 60 classes (0 = background), sorted: a PNG value is the
# position of the annotation's category_id here (mmseg converter's `_mapping`).
DETAIL_CATEGORY_IDS: tuple[int, ...] = (
    0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105,
    113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308,
    324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)
CATEGORY_TO_PNG_VALUE: dict[int, int] = {c: k for k, c in enumerate(DETAIL_CATEGORY_IDS)}

assert len(CLASS_NAMES_60) == len(PALETTE_60) == len(DETAIL_CATEGORY_IDS) == 60
assert list(DETAIL_CATEGORY_IDS) == sorted(DETAIL_CATEGORY_IDS)

VARIANTS = ('59', '60')
DEFAULT_VARIANT = '59'
SPLITS = ('train', 'val')
VOC_DIR = 'VOC2010'
IMAGE_DIR = 'JPEGImages'
LABEL_DIR = 'SegmentationClassContext'
SPLIT_DIR = os.path.join('ImageSets', 'SegmentationContext')
RAW_IGNORE = 255  # A stored 255 is ignored in both variants.
_LOG = logging.getLogger(__name__)
CONVERT_HINT = (' The labels and split lists are written from trainval_merged.json by: python '
                '-m semseg_jax.data.datasets.pascal_context --json=<trainval_merged.json> '
                '--voc=<VOCdevkit/VOC2010>.')


def variant_of(data: Any) -> str:
  """config.data.variant as '59' or '60' ('' -> '59'); ValueError for anything else."""
  variant = str(data.variant or '')
  variant = variant or DEFAULT_VARIANT
  if variant not in VARIANTS:
    raise ValueError(f'config.data.variant={data.variant!r} is not a Pascal Context variant; '
                     f"expected '59' (the default, also '') or '60'.")
  return variant


def _classes(variant: str) -> tuple[tuple[str, ...], np.ndarray]:
  return (CLASS_NAMES_60, PALETTE_60) if variant == '60' else (CLASS_NAMES_59, PALETTE_59)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """(class names, uint8 [C, 3] palette) of the variant config.data.variant picks."""
  return _classes(variant_of(data))


def label_map(variant: str, ignore_index: int) -> files.LabelMap:
  """Stored PNG value -> class: '60' keeps 0..59; '59' ignores 0 and shifts 1..59 down."""
  if variant == '60':
    return files.LabelMap.identity(60, ignore_index, raw_ignore=(RAW_IGNORE,))
  return files.LabelMap.zero_ignored(59, ignore_index, raw_ignore=(RAW_IGNORE,))


def _root_hint(root: str) -> str:
  if os.path.isdir(os.path.join(root, IMAGE_DIR)):
    return f' root should be the VOCdevkit directory holding {VOC_DIR}/, not {root}.'
  if os.path.isdir(os.path.join(root, 'VOCdevkit', VOC_DIR)):
    return f' root should be {os.path.join(root, "VOCdevkit")}.'
  return ''


def make_source(root: str, split: str, ignore_index: int = 255,
                variant: str = DEFAULT_VARIANT) -> files.FileSource:
  """The Pascal Context `split` under `root` (the VOCdevkit directory), in list order."""
  if variant not in VARIANTS:
    raise ValueError(f'Pascal Context: unknown variant {variant!r}; expected one of {VARIANTS}.')
  name = f'Pascal Context ({variant} classes)'
  if split not in SPLITS:
    raise ValueError(f'{name}: unknown split {split!r}; expected one of {SPLITS}.')
  if not root:
    raise ValueError(f'{name}: no root given; set config.data.root to the VOCdevkit directory.')
  class_names, palette = _classes(variant)
  ignore_index = files.check_ignore_index(ignore_index, len(class_names), name)
  voc = os.path.join(root, VOC_DIR)
  image_dir, label_dir = os.path.join(voc, IMAGE_DIR), os.path.join(voc, LABEL_DIR)
  hint = _root_hint(root)
  if not hint and os.path.isdir(image_dir) and not os.path.isdir(label_dir):
    hint = CONVERT_HINT
  files.require_dirs(name, split, image_dir, label_dir, hint=hint)
  list_path = os.path.join(voc, SPLIT_DIR, f'{split}.txt')
  if not os.path.isfile(list_path):
    raise ValueError(f'{name}: split list {list_path} does not exist.{CONVERT_HINT}')
  ids = files.read_split_list(list_path, name)
  image_paths = [os.path.join(image_dir, i + '.jpg') for i in ids]
  label_paths = [os.path.join(label_dir, i + '.png') for i in ids]
  files.require_files(name, 'image', image_paths, list_path)
  files.require_files(name, 'label', label_paths, list_path)
  return files.FileSource(name, split, ids, image_paths, label_paths,
                          label_map(variant, ignore_index), class_names, palette)


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data (root, ignore_index, variant); `seed` is not used."""
  del seed
  return make_source(files.optional_str(data.root), split, data.ignore_index, variant_of(data))


# Ids of an example tree's split lists (sorted, as the converters write them).
EXAMPLE_IDS = {'train': ('2008_000002', '2008_000008', '2010_000003'),
               'val': ('2008_000010', '2009_000001')}


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0) -> str:
  """Writes a tiny VOCdevkit/VOC2010 tree in the converted form read here; returns the
  VOCdevkit path (the root). Both variants read the same files.

  For each split of config.data.train_split / eval_split (or `splits`): the ids of EXAMPLE_IDS
  in ImageSets/SegmentationContext/<split>.txt, JPEGImages/<id>.jpg RGB JPEGs and
  SegmentationClassContext/<id>.png 8-bit PNGs (mode L) holding every value 0..59 (0 =
  background) and a few 255 (ignored in both variants). Sizes: files.EXAMPLE_SIZES.
  """
  variant_of(data)
  chosen = files.example_splits(data, SPLITS, 'Pascal Context', splits)
  rng = np.random.default_rng(seed)
  voc = os.path.join(directory, 'VOCdevkit', VOC_DIR)
  count = 0
  for split in chosen:
    files.write_lines(os.path.join(voc, SPLIT_DIR, f'{split}.txt'), EXAMPLE_IDS[split])
    for i in EXAMPLE_IDS[split]:
      regions = files.example_regions(rng, files.example_size(count), len(CLASS_NAMES_60) + 1)
      count += 1
      files.save_image(os.path.join(voc, IMAGE_DIR, i + '.jpg'), files.example_image(rng, regions))
      raw = np.where(regions == len(CLASS_NAMES_60), RAW_IGNORE, regions)  # The 61st: 255.
      files.save_label(os.path.join(voc, LABEL_DIR, i + '.png'), raw.astype(np.uint8))
  return os.path.join(directory, 'VOCdevkit')


# --- Converter: trainval_merged.json -> SegmentationClassContext/*.png ----------------------


def _mask_api() -> Any:
  try:
    from pycocotools import mask
  except ImportError as e:
    raise ImportError('Converting trainval_merged.json needs pycocotools to decode its RLE '
                      'masks: pip install pycocotools') from e
  return mask


def _decode(mask_api: Any, segmentation: Any, where: str) -> np.ndarray:
  """One compressed COCO RLE -> bool [H, W]."""
  if not (isinstance(segmentation, dict) and 'size' in segmentation
          and isinstance(segmentation.get('counts'), (str, bytes))):
    raise ValueError(f'{where}: segmentation is not a COCO compressed RLE '
                     f'{{"size": [h, w], "counts": "..."}}.')
  return mask_api.decode(segmentation).astype(bool)


def paint_mask(mask_api: Any, image: dict, annotations: Sequence[dict],
               json_path: str) -> np.ndarray:
  """uint8 [H, W] PNG values of one Detail image: 0, then each annotation's category value
  painted in order (later ones overwrite earlier ones where they overlap)."""
  height, width = int(image['height']), int(image['width'])
  painted = np.zeros((height, width), np.uint8)
  for annotation in annotations:
    category = annotation['category_id']
    where = f'{json_path}: image {image["file_name"]} (image_id {image["image_id"]})'
    if category not in CATEGORY_TO_PNG_VALUE:
      raise ValueError(f'{where} has a segmentation of category_id {category}, which is not '
                       f'one of the 60 Pascal Context categories {DETAIL_CATEGORY_IDS}.')
    region = _decode(mask_api, annotation['segmentation'], where)
    if region.shape != painted.shape:
      raise ValueError(f'{where}: a mask of category_id {category} is {region.shape[0]}x'
                       f'{region.shape[1]} but the image is {height}x{width} (HxW).')
    painted[region] = CATEGORY_TO_PNG_VALUE[category]
  return painted


def _write_split_list(path: str, ids: list[str]) -> None:
  if os.path.exists(path):
    with open(path) as f:
      listed = [line.split()[0] for line in f if line.strip()]
    if listed == ids:
      _LOG.info('%s exists and lists the same %d ids; left as it is.', path, len(ids))
    else:
      _LOG.warning('%s exists and was left as it is, but its %d ids differ from the %d ids '
                   'the json gives this phase.', path, len(listed), len(ids))
    return
  with open(path, 'w') as f:
    f.write(''.join(i + '\n' for i in ids))
  _LOG.info('Wrote %s (%d ids).', path, len(ids))


def convert_detail(json_path: str, voc2010_dir: str) -> int:
  """Writes VOC2010/SegmentationClassContext/<id>.png for every image of trainval_merged.json
  and, where they do not exist yet, ImageSets/SegmentationContext/{train,val}.txt (sorted ids
  of the images with that 'phase'). Returns the number of PNGs written."""
  mask_api = _mask_api()
  with open(json_path) as f:
    detail = json.load(f)
  for key in ('images', 'annos_segmentation'):
    if key not in detail:
      raise ValueError(f'{json_path} has no {key!r}; expected PASCAL-in-Detail\'s '
                       f'trainval_merged.json.')
  by_image = collections.defaultdict(list)  # image_id -> annotations, in json order.
  for annotation in detail['annos_segmentation']:
    by_image[annotation['image_id']].append(annotation)
  label_dir = os.path.join(voc2010_dir, LABEL_DIR)
  os.makedirs(label_dir, exist_ok=True)
  phases, painted_ids = collections.defaultdict(list), set()
  for image in detail['images']:
    stem = os.path.splitext(os.path.basename(image['file_name']))[0]
    painted = paint_mask(mask_api, image, by_image.get(image['image_id'], ()), json_path)
    painted_ids.add(image['image_id'])
    Image.fromarray(painted).save(os.path.join(label_dir, stem + '.png'))
    phases[image.get('phase')].append(stem)
  unused = sorted(by_image.keys() - painted_ids)
  if unused:
    _LOG.warning('%s: %d annotation(s) of %d image_id(s) not in its images were not used: '
                 '%s.', json_path, sum(len(by_image[i]) for i in unused), len(unused),
                 files.first_names(unused))
  split_dir = os.path.join(voc2010_dir, SPLIT_DIR)
  os.makedirs(split_dir, exist_ok=True)
  for split in SPLITS:
    _write_split_list(os.path.join(split_dir, f'{split}.txt'), sorted(phases[split]))
  _LOG.info('Wrote %d label PNGs to %s.', len(detail['images']), label_dir)
  return len(detail['images'])


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(
      description='Paint Pascal Context label PNGs (60 classes, 0 = background) and split '
                  'lists from PASCAL-in-Detail trainval_merged.json.')
  parser.add_argument('--json', required=True, help='Path of trainval_merged.json.')
  parser.add_argument('--voc', required=True, help='The VOCdevkit/VOC2010 directory.')
  args = parser.parse_args(argv)
  logging.basicConfig(format='%(message)s')  # No-op where logging is set up already.
  _LOG.setLevel(logging.INFO)
  count = convert_detail(args.json, args.voc)
  print(f'{count} label PNGs in {os.path.join(args.voc, LABEL_DIR)}.')


if __name__ == '__main__':
  main()
