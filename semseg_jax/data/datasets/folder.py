"""Your own data: a folder of images and a folder of labels, described by the config alone.

    <config.data.root>/
      images/<split>/<stem>.jpg     config.data.folder.image_dir / image_suffix
      labels/<split>/<stem>.png     config.data.folder.label_dir / label_suffix

`{split}` in the directory names is replaced by the split. Labels pair with images by stem and
are either index maps (8- or 16-bit single-channel or palette PNGs holding class ids, with
255 or config.data.ignore_index ignored; or with 0 ignored too and ids shifted down when
config.data.reduce_zero_label) or RGB colour masks (config.data.label_colors gives each
class's colour; config.data.ignore_colors the colours to ignore). config.data.class_names
names the classes; config.data.folder.split_list optionally lists the stems of a split.
"""

import os
from typing import Any, Optional, Sequence

import numpy as np

from semseg_jax.data.datasets import files

NAME = 'folder dataset'


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """config.data.class_names and config.data.palette (generated colours when empty)."""
  names = tuple(str(n) for n in data.class_names)
  if not names:
    raise ValueError('config.data.class_names is empty; name the classes in label order.')
  if len(set(names)) != len(names):
    raise ValueError(f'config.data.class_names has duplicates: {names}.')
  if not data.palette:
    return names, files.default_palette(len(names))
  palette = np.asarray(data.palette)
  if palette.shape != (len(names), 3) or palette.min() < 0 or palette.max() > 255:
    raise ValueError(f'config.data.palette: expected {len(names)} (r, g, b) triples of 0..255 '
                     f'(one per class name), got shape {palette.shape}.')
  return names, palette.astype(np.uint8)


def label_map(data: Any, num_classes: int) -> Any:
  """The LabelMap or ColourMap that config.data describes."""
  ignore_index = files.check_ignore_index(data.ignore_index, num_classes, NAME)
  if data.label_colors:
    colours = [tuple(c) for c in data.label_colors]
    if len(colours) != num_classes:
      raise ValueError(f'config.data.label_colors has {len(colours)} colours for '
                       f'{num_classes} classes in config.data.class_names.')
    table = {colour: k for k, colour in enumerate(colours)}
    if len(table) != len(colours):
      raise ValueError('config.data.label_colors: two classes share a colour.')
    for colour in data.ignore_colors:
      if tuple(colour) in table:
        raise ValueError(f'config.data.ignore_colors: {tuple(colour)} is also a class colour.')
      table[tuple(colour)] = ignore_index
    try:
      return files.ColourMap(table, num_classes, ignore_index)
    except ValueError as e:
      raise ValueError(f'config.data.label_colors / ignore_colors: {e}') from e
  if data.ignore_colors:
    raise ValueError('config.data.ignore_colors is set but config.data.label_colors is empty.')
  raw_ignore = {255, ignore_index}  # 255 never is a class: classes stay below ignore_index.
  if data.reduce_zero_label:
    return files.LabelMap.zero_ignored(num_classes, ignore_index, raw_ignore=raw_ignore)
  return files.LabelMap.identity(num_classes, ignore_index, raw_ignore=raw_ignore)


def make_source(data: Any, split: str) -> files.FileSource:
  folder = data.folder
  root = files.optional_str(data.root)
  if not root.strip():
    raise ValueError('config.data.root is not set; point it at the directory holding the '
                     'images and labels.')
  names, palette = class_names_and_palette(data)
  image_dir = os.path.join(root, folder.image_dir.format(split=split))
  label_dir = os.path.join(root, folder.label_dir.format(split=split))
  files.require_dirs(NAME, split, image_dir, label_dir,
                     hint=' (config.data.folder.image_dir / label_dir)')
  images = files.list_files(image_dir, folder.image_suffix)
  labels = files.list_files(label_dir, folder.label_suffix)
  if folder.split_list:
    list_path = os.path.join(root, folder.split_list.format(split=split))
    stems = files.read_split_list(list_path, NAME)
    missing = [s for s in stems if s not in images or s not in labels]
    if missing:
      raise ValueError(f'{NAME}: {len(missing)} stem(s) listed in {list_path} lack an image '
                       f'*{folder.image_suffix} in {image_dir} or a label *{folder.label_suffix} '
                       f'in {label_dir}: {files.first_names(missing)}.')
  else:
    if not images:
      raise ValueError(f'{NAME}: no *{folder.image_suffix} images in {image_dir} (split '
                       f'{split!r}; config.data.folder.image_suffix).')
    stems = files.pair_files(NAME, images, labels, image_dir, label_dir)
  return files.FileSource(NAME, split, stems, [images[s] for s in stems],
                          [labels[s] for s in stems], label_map(data, len(names)), names,
                          palette)


def from_config(data: Any, split: str, seed: int = 0) -> files.FileSource:
  """The source of `split` for config.data; `seed` is not used."""
  del seed
  return make_source(data, split)


def write_example_tree(directory: str, data: Any, *, splits: Optional[Sequence[str]] = None,
                       seed: int = 0, num_train: int = 4, num_eval: int = 3) -> str:
  """Writes a tiny tree in the layout and label encoding config.data describes into
  `directory` itself; returns `directory` (the root).

  For each split of config.data.train_split / eval_split (or `splits`; num_train examples for
  the train split, num_eval for the others): <folder.image_dir>/<split>_<k><folder.image_suffix>
  RGB images (JPEG for .jpg / .jpeg, else the format the suffix names) and <folder.label_dir>/
  <split>_<k><folder.label_suffix> labels holding every class in square regions, and an ignored
  region: with config.data.label_colors, RGB masks in those colours (the ignored region in the
  first of config.data.ignore_colors, none without them); otherwise 8-bit index maps of the
  class ids (k + 1 with config.data.reduce_zero_label) with 255 (or 0 with reduce_zero_label)
  ignored. With folder.split_list, each split's list names its stems. Sizes:
  files.EXAMPLE_SIZES.
  """
  names, _ = class_names_and_palette(data)
  label_map(data, len(names))  # Checks label_colors, ignore_colors and ignore_index.
  folder = data.folder
  chosen = files.example_splits(data, None, NAME, splits)
  rng = np.random.default_rng(seed)
  num_classes = len(names)
  # Region values 0..C-1 are the classes; value C, where there is one, is ignored.
  if data.label_colors:
    colours = np.array([tuple(c) for c in data.label_colors]
                       + [tuple(c) for c in data.ignore_colors[:1]], np.uint8)
    num_values = len(colours)
  else:
    num_values = num_classes + 1
  count = 0
  for split in chosen:
    image_dir = os.path.join(directory, folder.image_dir.format(split=split))
    label_dir = os.path.join(directory, folder.label_dir.format(split=split))
    stems = [f'{split.replace("/", "_")}_{k}'
             for k in range(num_train if split == data.train_split else num_eval)]
    for stem in stems:
      regions = files.example_regions(rng, files.example_size(count), num_values)
      count += 1
      files.save_image(os.path.join(image_dir, stem + folder.image_suffix),
                       files.example_image(rng, regions))
      if data.label_colors:
        label = colours[regions]
      elif data.reduce_zero_label:
        label = np.where(regions == num_classes, 0, regions + 1)
      else:
        label = np.where(regions == num_classes, 255, regions)
      files.save_label(os.path.join(label_dir, stem + folder.label_suffix),
                       label.astype(np.uint8))
    if folder.split_list:
      files.write_lines(os.path.join(directory, folder.split_list.format(split=split)), stems)
  return directory
