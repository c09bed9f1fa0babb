"""Datasets by name: `make_source(config.data, split)` returns a source.

A source is random access (`len`, `source[i]` -> {'image': uint8 [H, W, 3] RGB, 'label': uint8
[H, W] with the dataset's labels already reduced, 'index': i}) with `image_size(i)` (read without
decoding pixels), `name(i)`, `class_names`, `palette` and `num_classes`. A bad example raises
`files.DataError` naming its file(s).

`config.data.name` is a key of DATASETS, or '<kind>:<argument>' for the kinds that take one:
'tfds:<tfds name>' and 'arrayrecord:<directory of converted shards>'. DATASETS maps each kind
to a `Dataset`: its classes, its source and the writer of a tiny example tree in its release's
layout (`write_example_tree(config.data, directory)` -> a root to train a few steps on).
"""

import dataclasses
from types import ModuleType
from typing import Any, Callable, Optional

import ml_collections
import numpy as np

from semseg_jax.data.datasets import ade20k
from semseg_jax.data.datasets import arrayrecord
from semseg_jax.data.datasets import camvid
from semseg_jax.data.datasets import cityscapes
from semseg_jax.data.datasets import coco_stuff
from semseg_jax.data.datasets import folder
from semseg_jax.data.datasets import mapillary
from semseg_jax.data.datasets import pascal_context
from semseg_jax.data.datasets import synthetic
from semseg_jax.data.datasets import tfds_source
from semseg_jax.data.datasets import voc

Data = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Everything about one dataset kind: its module's class_names_and_palette, from_config and
  write_example_tree.

  classes: config.data -> (class names, uint8 [C, 3] palette), reading no image.
  source: (config.data, split, seed) -> the split's random-access source.
  write_example_tree: (directory, config.data) -> the root of a tiny tree written under
      directory in the release's exact layout and label encodings, holding the train and eval
      splits; None for kinds that read no dataset files of their own.
  """
  classes: Callable[[Data], tuple[tuple[str, ...], np.ndarray]]
  source: Callable[[Data, str, int], Any]
  write_example_tree: Optional[Callable[[str, Data], str]]


def _dataset(module: ModuleType, reads_files: bool = True) -> Dataset:
  return Dataset(classes=module.class_names_and_palette, source=module.from_config,
                 write_example_tree=module.write_example_tree if reads_files else None)


# Dataset kind -> everything about it.
DATASETS: dict[str, Dataset] = {
    'synthetic': _dataset(synthetic, reads_files=False),
    'ade20k': _dataset(ade20k),
    'cityscapes': _dataset(cityscapes),
    'camvid': _dataset(camvid),
    'voc2012': _dataset(voc),
    'pascal_context': _dataset(pascal_context),
    'coco_stuff': _dataset(coco_stuff),
    'mapillary': _dataset(mapillary),
    'folder': _dataset(folder),
    'tfds': _dataset(tfds_source, reads_files=False),
    'arrayrecord': _dataset(arrayrecord, reads_files=False),
}


def kind(name: str) -> str:
  """The DATASETS key of config.data.name: 'tfds:voc/2012' -> 'tfds'."""
  return name.split(':', 1)[0] if ':' in name else name


def _check_name(name: str) -> str:
  if kind(name) not in DATASETS:
    raise ValueError(f'config.data.name={name!r} is not a known dataset; expected one of '
                     f'{sorted(DATASETS)} (tfds and arrayrecord as "tfds:<name>", '
                     f'"arrayrecord:<dir>").')
  return kind(name)


def class_names_and_palette(data: Data) -> tuple[tuple[str, ...], np.ndarray]:
  """(class names, uint8 [C, 3] palette) of the dataset of `config.data`."""
  try:
    return DATASETS[_check_name(data.name)].classes(data)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'Dataset config.data.name={data.name!r}: {e}') from e


def make_source(data: Data, split: str, seed: int = 0) -> Any:
  """The source of `split` for `config.data`; errors name the field that is wrong. A source
  that decodes files gets config.data.max_image_pixels (its `max_image_pixels` attribute)."""
  dataset_kind = _check_name(data.name)
  try:
    source = DATASETS[dataset_kind].source(data, split, seed)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'Dataset config.data.name={data.name!r}, config.data.root={data.root!r}, '
                     f'split {split!r}: {e}') from e
  if hasattr(source, 'max_image_pixels'):
    source.max_image_pixels = data.max_image_pixels
  return source


def write_example_tree(data: Data, directory: str) -> str:
  """Writes a tiny tree of config.data's dataset (its release's layout and label encodings,
  the train and eval splits of config.data) under `directory`; returns the path to use as
  config.data.root. ValueError for a dataset that reads no files of its own."""
  dataset_kind = _check_name(data.name)
  writer = DATASETS[dataset_kind].write_example_tree
  if writer is None:
    raise ValueError(f'config.data.name={data.name!r} reads no dataset files of its own: it has '
                     f'no example tree.')
  try:
    return writer(directory, data)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'Dataset config.data.name={data.name!r}: {e}') from e
