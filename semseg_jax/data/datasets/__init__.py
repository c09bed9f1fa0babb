"""Datasets by name: `make_source(config.data, split)` returns a source.

A source is random access (`len`, `source[i]` -> {'image': uint8 [H, W, 3] RGB, 'label': uint8
[H, W] with the dataset's labels already reduced, 'index': i}) with `image_size(i)` (read without
decoding pixels), `name(i)`, `class_names`, `palette` and `num_classes`. A bad example raises
`files.DataError` naming its file(s).

`config.data.name` is a key of DATASETS, or '<kind>:<argument>' for the kinds that take one:
'tfds:<tfds name>' and 'arrayrecord:<directory of converted shards>'.
"""

from typing import Any, Callable

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


def _synthetic(data: Data, split: str, seed: int) -> Any:
  size = data.synthetic_train_size if split == 'train' else data.synthetic_eval_size
  return synthetic.SyntheticSource(split, size, data.synthetic_image_size, seed=seed,
                                   ignore_index=data.ignore_index)


def _ade20k(data: Data, split: str, seed: int) -> Any:
  del seed
  return ade20k.ADE20KSource(data.root, split, ignore_index=data.ignore_index)


def _without_seed(from_config: Callable[[Data, str], Any]) -> Callable[[Data, str, int], Any]:
  return lambda data, split, seed: from_config(data, split)


# Dataset kind -> source constructor (config.data, split, seed).
DATASETS: dict[str, Callable[[Data, str, int], Any]] = {
    'synthetic': _synthetic,
    'ade20k': _ade20k,
    'cityscapes': _without_seed(cityscapes.from_config),
    'camvid': _without_seed(camvid.from_config),
    'voc2012': _without_seed(voc.from_config),
    'pascal_context': _without_seed(pascal_context.from_config),
    'coco_stuff': _without_seed(coco_stuff.from_config),
    'mapillary': _without_seed(mapillary.from_config),
    'folder': _without_seed(folder.from_config),
    'tfds': _without_seed(tfds_source.from_config),
    'arrayrecord': _without_seed(arrayrecord.from_config),
}


def _fixed(names: tuple[str, ...], palette: np.ndarray) -> Callable[[Data], tuple]:
  return lambda data: (names, palette)


# Dataset kind -> (class names, uint8 [C, 3] palette) from config.data, read from no image.
CLASSES: dict[str, Callable[[Data], tuple[tuple[str, ...], np.ndarray]]] = {
    'synthetic': _fixed(synthetic.CLASS_NAMES, synthetic.PALETTE),
    'ade20k': _fixed(ade20k.CLASS_NAMES, ade20k.PALETTE),
    'cityscapes': _fixed(cityscapes.CLASS_NAMES, cityscapes.PALETTE),
    'camvid': _fixed(camvid.CLASS_NAMES, camvid.PALETTE),
    'voc2012': _fixed(voc.CLASS_NAMES, voc.PALETTE),
    'pascal_context': pascal_context.class_names_and_palette,
    'coco_stuff': coco_stuff.class_names_and_palette,
    'mapillary': _fixed(mapillary.CLASS_NAMES, mapillary.PALETTE),
    'folder': folder.class_names_and_palette,
    'tfds': tfds_source.class_names_and_palette,
    'arrayrecord': arrayrecord.class_names_and_palette,
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
    return CLASSES[_check_name(data.name)](data)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'Dataset config.data.name={data.name!r}: {e}') from e


def make_source(data: Data, split: str, seed: int = 0) -> Any:
  """The source of `split` for `config.data`; errors name the field that is wrong."""
  dataset_kind = _check_name(data.name)
  try:
    return DATASETS[dataset_kind](data, split, seed)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'Dataset config.data.name={data.name!r}, config.data.root={data.root!r}, '
                     f'split {split!r}: {e}') from e
