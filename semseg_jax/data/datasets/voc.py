"""Pascal VOC 2012 segmentation, with the SBD-augmented 'train_aug' split (10,582 images).

    VOCdevkit/                                     <- config.data.root
      VOC2012/
        JPEGImages/<id>.jpg                        every image, SBD's included
        SegmentationClass/<id>.png                 palette PNGs: indices 0..20, 255 = void
        SegmentationClassAug/<id>.png              (train_aug) 8-bit masks 0..20 (mode L or P)
        ImageSets/Segmentation/{train,val,trainval}.txt     1464 / 1449 / 2913 ids
        ImageSets/Segmentation/train_aug.txt       (train_aug) written by `convert_sbd`
      VOCaug/dataset/                              SBD's benchmark_RELEASE/dataset
        cls/<id>.mat, train.txt, val.txt           11355 masks (GTcls.Segmentation), 8498 + 2857

Labels are the PNG indices themselves (never their colours): classes 0..20 with 0 the real
class 'background' (no reduce_zero_label), and 255 (object borders, difficult regions) the
ignore label. The plain splits read SegmentationClass. 'train_aug' reads VOC's own
SegmentationClass mask for the ids of train.txt (as mmseg's train.txt + aug.txt concatenation
does) and SegmentationClassAug for the others, falling back to SegmentationClass for an id
without a mask there. Its ids come from ImageSets/Segmentation/
train_aug.txt if present, else mmseg's trainaug.txt (sorted; its line order is arbitrary), else
(stems of SegmentationClassAug + train.txt) - val.txt; a val id in them is an error.

`convert_sbd` (also `python -m semseg_jax.data.datasets.voc --sbd=VOCdevkit/VOCaug/dataset
--voc=VOCdevkit/VOC2012`) writes SegmentationClassAug and train_aug.txt from SBD's .mat files.
"""

import argparse
import os
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from semseg_jax.data.datasets import files

CLASS_NAMES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
# The VOC colour map's first 21 entries (entry 255, the void colour, is (224, 224, 192)).
PALETTE = np.array([
    [0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
    [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0],
    [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0],
    [0, 192, 0], [128, 192, 0], [0, 64, 128]], np.uint8)
NUM_CLASSES = len(CLASS_NAMES)
RAW_IGNORE = 255  # Void in the released PNGs.

SPLITS = ('train', 'val', 'trainval', 'train_aug')
NAME = 'PascalVOC'
IMAGE_SUFFIX = '.jpg'
LABEL_SUFFIX = '.png'
TRAIN_AUG_LIST = 'train_aug.txt'  # Written by convert_sbd.
MMSEG_TRAIN_AUG_LIST = 'trainaug.txt'  # Written by mmseg's tools/dataset_converters/voc_aug.py.


def _voc_dirs(voc2012_dir: str) -> dict[str, str]:
  return {
      'images': os.path.join(voc2012_dir, 'JPEGImages'),
      'labels': os.path.join(voc2012_dir, 'SegmentationClass'),
      'aug_labels': os.path.join(voc2012_dir, 'SegmentationClassAug'),
      'lists': os.path.join(voc2012_dir, 'ImageSets', 'Segmentation'),
  }


def label_map(ignore_index: int) -> files.LabelMap:
  """Stored indices 0..20 are the classes; stored 255 becomes ignore_index."""
  return files.LabelMap.identity(NUM_CLASSES, ignore_index, raw_ignore=(RAW_IGNORE,))


def _check_unique(ids: list[str], listed_in: str) -> None:
  seen, repeated = set(), []
  for i in ids:
    if i in seen:
      repeated.append(i)
    seen.add(i)
  if repeated:
    raise ValueError(f'{NAME}: {listed_in} lists {len(repeated)} id(s) more than once: '
                     f'{files.first_names(repeated)}.')


def _train_aug_ids_and_labels(dirs: dict[str, str]) -> tuple[list[str], list[str], str]:
  """(ids, label paths, where the ids come from) of the 'train_aug' split."""
  lists = dirs['lists']
  val_list = os.path.join(lists, 'val.txt')
  val_ids = set(files.read_split_list(val_list, NAME))
  ours, mmseg = os.path.join(lists, TRAIN_AUG_LIST), os.path.join(lists, MMSEG_TRAIN_AUG_LIST)
  if os.path.isfile(ours):
    ids, listed_in = files.read_split_list(ours, NAME), ours
  elif os.path.isfile(mmseg):
    ids, listed_in = sorted(files.read_split_list(mmseg, NAME)), mmseg
  else:
    train_list = os.path.join(lists, 'train.txt')
    train_ids = files.read_split_list(train_list, NAME)
    aug_ids = files.list_files(dirs['aug_labels'], LABEL_SUFFIX)
    ids = sorted((aug_ids.keys() | set(train_ids)) - val_ids)
    listed_in = (f'the masks in {dirs["aug_labels"]} and {train_list} (no {ours} or {mmseg}; '
                 f'ids of {val_list} left out)')
  _check_unique(ids, listed_in)
  in_val = [i for i in ids if i in val_ids]
  if in_val:
    raise ValueError(f'{NAME}: {len(in_val)} id(s) of {listed_in} are in {val_list}; '
                     f'train_aug must exclude val: {files.first_names(in_val)}.')
  # VOC's own annotations (with their 255 borders) where they exist for a train id, as mmseg's
  # train.txt + aug.txt concatenation reads them; SBD's masks for the rest.
  voc_train_ids = set(files.read_split_list(os.path.join(lists, 'train.txt'), NAME))
  label_paths, missing = [], []
  for i in ids:
    aug_path = os.path.join(dirs['aug_labels'], i + LABEL_SUFFIX)
    voc_path = os.path.join(dirs['labels'], i + LABEL_SUFFIX)
    if i in voc_train_ids and os.path.isfile(voc_path):
      label_paths.append(voc_path)
    elif os.path.isfile(aug_path):
      label_paths.append(aug_path)
    else:
      label_paths.append(voc_path)
      if not os.path.isfile(voc_path):
        missing.append(aug_path)
  if missing:
    raise ValueError(f'{NAME}: {len(missing)} id(s) of {listed_in} have a label in neither '
                     f'{dirs["aug_labels"]} nor {dirs["labels"]}: '
                     f'{files.first_names(missing)}.')
  return ids, label_paths, listed_in


def make_source(root: str, split: str, ignore_index: int = 255) -> files.FileSource:
  """The VOC 2012 `split` under `root` (the VOCdevkit directory holding VOC2012/)."""
  if split not in SPLITS:
    raise ValueError(f'{NAME}: unknown split {split!r}; expected one of {SPLITS}.')
  ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, NAME)
  voc2012_dir = os.path.join(root, 'VOC2012')
  dirs = _voc_dirs(voc2012_dir)
  hint = ''
  if os.path.isdir(os.path.join(root, 'VOCdevkit', 'VOC2012')):
    hint = f' root should be {os.path.join(root, "VOCdevkit")}.'
  elif os.path.isdir(os.path.join(root, 'JPEGImages')):
    hint = f' root should be the VOCdevkit directory holding VOC2012/, not {root}.'
  needed = [dirs['images'], dirs['labels']]
  if split == 'train_aug':
    needed.append(dirs['aug_labels'])
  files.require_dirs(NAME, split, *needed, hint=hint)
  if split == 'train_aug':
    ids, label_paths, listed_in = _train_aug_ids_and_labels(dirs)
  else:
    listed_in = os.path.join(dirs['lists'], f'{split}.txt')
    ids = files.read_split_list(listed_in, NAME)
    _check_unique(ids, listed_in)
    label_paths = [os.path.join(dirs['labels'], i + LABEL_SUFFIX) for i in ids]
    files.require_files(NAME, 'label', label_paths, listed_in)
  image_paths = [os.path.join(dirs['images'], i + IMAGE_SUFFIX) for i in ids]
  files.require_files(NAME, 'image', image_paths, listed_in)
  return files.FileSource(NAME, split, ids, image_paths, label_paths, label_map(ignore_index),
                          CLASS_NAMES, PALETTE)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """The 21 classes and the VOC colour map's first 21 colours, whatever config.data says."""
  del data
  return CLASS_NAMES, PALETTE


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data (root, ignore_index); `seed` is not used."""
  del seed
  return make_source(files.optional_str(data.root), split, data.ignore_index)


# --- SBD -> SegmentationClassAug ------------------------------------------------------------


def _unwrap(value: Any) -> Any:
  """The element of a one-element object array, repeatedly (loadmat nests cells that way)."""
  while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
    value = value.flat[0]
  return value


def _struct_field(struct: Any, field: str) -> Any:
  """`struct.field` of a MATLAB struct as loadmat returns it (a one-element record array, a
  mat_struct with struct_as_record=False, or a dict); None when there is no such field."""
  struct = _unwrap(struct)
  if isinstance(struct, np.ndarray) and struct.dtype.names:
    if field not in struct.dtype.names or struct.size != 1:
      return None
    return _unwrap(struct.flat[0][field])
  if isinstance(struct, dict):
    return _unwrap(struct.get(field))
  return _unwrap(getattr(struct, field, None)) if struct is not None else None


def read_sbd_segmentation(path: str) -> np.ndarray:
  """GTcls.Segmentation of an SBD cls/<id>.mat as uint8 [H, W] class ids (0..20).

  ValueError naming the file when it cannot be read, has no GTcls.Segmentation, or holds
  something other than a 2-D map of classes 0..20 (or 255).
  """
  from scipy import io as scipy_io  # Only the converter needs scipy.
  try:
    contents = scipy_io.loadmat(path)
  except (OSError, ValueError, TypeError, NotImplementedError) as e:
    raise ValueError(f'{path}: cannot be read as a MATLAB .mat file ({e}).') from e
  segmentation = _struct_field(contents.get('GTcls'), 'Segmentation')
  if not isinstance(segmentation, np.ndarray) or segmentation.dtype == object:
    found = 'no GTcls struct' if 'GTcls' not in contents else 'no GTcls.Segmentation array'
    raise ValueError(f'{path}: has {found}; expected an SBD cls/ file (struct GTcls with '
                     f'Segmentation, Boundaries, CategoriesPresent).')
  if segmentation.ndim != 2:
    raise ValueError(f'{path}: GTcls.Segmentation has shape {segmentation.shape}; expected '
                     f'a 2-D [H, W] class map.')
  if segmentation.dtype == bool:
    segmentation = segmentation.astype(np.uint8)
  elif np.issubdtype(segmentation.dtype, np.floating):
    if not np.array_equal(segmentation, np.round(segmentation)):
      raise ValueError(f'{path}: GTcls.Segmentation holds non-integer values.')
    segmentation = segmentation.astype(np.int64)
  elif not np.issubdtype(segmentation.dtype, np.integer):
    raise ValueError(f'{path}: GTcls.Segmentation has dtype {segmentation.dtype}; expected '
                     f'integers.')
  return label_map(RAW_IGNORE)(segmentation, path)  # Checks the values; names bad ones.


def _save_mask(mask: np.ndarray, path: str) -> None:
  """uint8 [H, W] -> an 8-bit greyscale (mode 'L') PNG."""
  Image.fromarray(np.ascontiguousarray(mask, np.uint8)).save(path, 'PNG')


def convert_sbd(sbd_dir: str, voc2012_dir: str, verbose: bool = False) -> int:
  """SBD's cls/*.mat -> VOC2012/SegmentationClassAug/<id>.png and the train_aug id list.

  `sbd_dir` holds cls/, train.txt and val.txt (VOCdevkit/VOCaug/dataset); `voc2012_dir` is
  VOCdevkit/VOC2012. Writes one mode-'L' PNG of GTcls.Segmentation for every .mat in cls/ (as
  mmseg's voc_aug.py does), one of SegmentationClass/<id>.png's indices for every VOC train id
  without a .mat (so the folder is complete on its own), then ImageSets/Segmentation/
  train_aug.txt = sorted((SBD train + SBD val + VOC train) - VOC val), last. Returns the number
  of ids in that list (10,582 for the real data). Lists and files are checked before anything
  is written; a bad .mat (ValueError naming it) stops the conversion before train_aug.txt is
  written. `verbose` prints what was written.
  """
  cls_dir = os.path.join(sbd_dir, 'cls')
  dirs = _voc_dirs(voc2012_dir)
  files.require_dirs('SBD', 'train_aug', cls_dir, dirs['labels'], dirs['lists'])
  mats = files.list_files(cls_dir, '.mat')
  if not mats:
    raise ValueError(f'SBD: no .mat files in {cls_dir}.')
  sbd_lists = [os.path.join(sbd_dir, f'{s}.txt') for s in ('train', 'val')]
  sbd_ids = {i for path in sbd_lists for i in files.read_split_list(path, 'SBD')}
  voc_train = files.read_split_list(os.path.join(dirs['lists'], 'train.txt'), NAME)
  voc_val = files.read_split_list(os.path.join(dirs['lists'], 'val.txt'), NAME)
  ids = sorted((sbd_ids | set(voc_train)) - set(voc_val))
  no_mask = sorted(sbd_ids - mats.keys() - set(voc_train) - set(voc_val))
  if no_mask:
    raise ValueError(f'SBD: {len(no_mask)} id(s) of {" and ".join(sbd_lists)} have no '
                     f'{cls_dir}/<id>.mat: {files.first_names(no_mask)}.')
  from_voc = sorted(set(voc_train) - mats.keys())
  voc_paths = [os.path.join(dirs['labels'], i + LABEL_SUFFIX) for i in from_voc]
  files.require_files(NAME, 'label', voc_paths, os.path.join(dirs['lists'], 'train.txt'))

  out_dir = dirs['aug_labels']
  os.makedirs(out_dir, exist_ok=True)
  for count, stem in enumerate(sorted(mats), 1):
    _save_mask(read_sbd_segmentation(mats[stem]), os.path.join(out_dir, stem + LABEL_SUFFIX))
    if verbose and count % 1000 == 0:
      print(f'  {count} / {len(mats)} .mat files converted', flush=True)
  identity = label_map(RAW_IGNORE)
  for stem, path in zip(from_voc, voc_paths):
    _save_mask(identity(files.read_raw_label(path), path),
               os.path.join(out_dir, stem + LABEL_SUFFIX))
  list_path = os.path.join(dirs['lists'], TRAIN_AUG_LIST)
  with open(list_path, 'w') as f:
    f.write(''.join(i + '\n' for i in ids))
  if verbose:
    print(f'Wrote {len(mats)} masks from {cls_dir} and {len(from_voc)} from {dirs["labels"]} '
          f'(VOC train ids without a .mat) to {out_dir}.')
    print(f'Wrote {len(ids)} ids (SBD train + val + VOC train, without VOC val) to '
          f'{list_path}.')
  return len(ids)


def main(argv: Optional[list[str]] = None) -> None:
  parser = argparse.ArgumentParser(
      description='Convert SBD (VOCaug) masks into VOC2012/SegmentationClassAug and write '
                  'ImageSets/Segmentation/train_aug.txt.')
  parser.add_argument('--sbd', required=True,
                      help="SBD's dataset directory holding cls/, train.txt, val.txt "
                           '(e.g. VOCdevkit/VOCaug/dataset).')
  parser.add_argument('--voc', required=True, help='The VOC2012 directory (VOCdevkit/VOC2012).')
  args = parser.parse_args(argv)
  try:
    convert_sbd(args.sbd, args.voc, verbose=True)
  except ValueError as e:
    parser.exit(1, f'error: {e}\n')


# --- A tiny example tree ------------------------------------------------------------------

# Ids of an example tree: VOC's train and val lists and SBD's, overlapping as the real ones do
# (2008_000002 is a VOC train id SBD lacks; 2007_000033 is VOC val and SBD train).
EXAMPLE_VOC_IDS = {'train': ('2007_000032', '2007_000039', '2008_000002'),
                   'val': ('2007_000033', '2009_000001')}
EXAMPLE_SBD_IDS = {'train': ('2007_000032', '2007_000033', '2008_000100', '2010_000300'),
                   'val': ('2007_000039', '2008_000200')}


def colour_map(n: int = 256) -> list[tuple[int, int, int]]:
  """The VOCdevkit's VOClabelcolormap: the bits of index i interleaved into (r, g, b)."""
  colours = []
  for i in range(n):
    r = g = b = 0
    c = i
    for j in range(8):
      r |= (c & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    colours.append((r, g, b))
  return colours


def save_palette_png(indices: np.ndarray, path: str) -> None:
  """uint8 [H, W] indices -> a SegmentationClass PNG: mode P with the VOC colour map."""
  files.save_label(path, indices, colour_map())


def save_sbd_mat(segmentation: np.ndarray, path: str) -> None:
  """An SBD cls/<id>.mat: struct GTcls with Boundaries (a sparse map per class), Segmentation
  (the uint8 [H, W] class map) and CategoriesPresent, as the release's files hold them."""
  from scipy import io as scipy_io  # Only SBD files need scipy.
  from scipy import sparse
  boundaries = np.empty((NUM_CLASSES - 1, 1), object)
  for k in range(NUM_CLASSES - 1):
    boundaries[k, 0] = sparse.csc_matrix(segmentation == k + 1, dtype=float)
  present = np.unique(segmentation[segmentation > 0]).reshape(-1, 1).astype(np.uint8)
  scipy_io.savemat(path, {'GTcls': {'Boundaries': boundaries, 'Segmentation': segmentation,
                                    'CategoriesPresent': present}})


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, convert: Optional[bool] = None) -> str:
  """Writes a tiny VOCdevkit under `directory`; returns its path (the root).

  VOC2012/: JPEGImages/<id>.jpg of every id of EXAMPLE_VOC_IDS and EXAMPLE_SBD_IDS,
  SegmentationClass/<id>.png palette PNGs (VOC colour map) of the VOC train and val ids holding
  every index 0..20 with 255 on region borders, and ImageSets/Segmentation/{train,val,
  trainval}.txt. VOCaug/dataset/ (SBD's benchmark_RELEASE/dataset): cls/<id>.mat whose
  GTcls.Segmentation holds every class 0..20, train.txt and val.txt. With `convert` (by default
  when config.data.train_split / eval_split, or `splits`, name 'train_aug') `convert_sbd` then
  writes SegmentationClassAug/ and train_aug.txt, as a user does. An image and its labels share
  one size; sizes follow files.EXAMPLE_SIZES.
  """
  chosen = files.example_splits(data, SPLITS, NAME, splits)
  convert = 'train_aug' in chosen if convert is None else convert
  rng = np.random.default_rng(seed)
  devkit = os.path.join(directory, 'VOCdevkit')
  voc2012 = os.path.join(devkit, 'VOC2012')
  dirs = _voc_dirs(voc2012)
  sbd = os.path.join(devkit, 'VOCaug', 'dataset')
  voc_ids = EXAMPLE_VOC_IDS['train'] + EXAMPLE_VOC_IDS['val']
  sbd_ids = EXAMPLE_SBD_IDS['train'] + EXAMPLE_SBD_IDS['val']
  for count, i in enumerate(sorted(set(voc_ids + sbd_ids))):
    size = files.example_size(count)
    regions = files.example_regions(rng, size, NUM_CLASSES)
    files.save_image(os.path.join(dirs['images'], i + IMAGE_SUFFIX),
                     files.example_image(rng, regions))
    if i in voc_ids:
      indices = np.where(files.example_borders(regions), RAW_IGNORE, regions)
      indices.flat[:NUM_CLASSES] = regions.flat[:NUM_CLASSES]  # Every class, borders or not.
      save_palette_png(indices.astype(np.uint8), os.path.join(dirs['labels'], i + LABEL_SUFFIX))
    if i in sbd_ids:  # SBD's annotation of the same regions: no borders.
      os.makedirs(os.path.join(sbd, 'cls'), exist_ok=True)
      save_sbd_mat(regions.astype(np.uint8), os.path.join(sbd, 'cls', i + '.mat'))
  for split, ids in (*EXAMPLE_VOC_IDS.items(), ('trainval', sorted(voc_ids))):
    files.write_lines(os.path.join(dirs['lists'], f'{split}.txt'), ids)
  for split, ids in EXAMPLE_SBD_IDS.items():
    files.write_lines(os.path.join(sbd, f'{split}.txt'), ids)
  if convert:
    convert_sbd(sbd, voc2012)
  return devkit


if __name__ == '__main__':
  main()
