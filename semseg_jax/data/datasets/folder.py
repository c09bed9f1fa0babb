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
from typing import Any

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


def from_config(data: Any, split: str) -> files.FileSource:
  return make_source(data, split)
