"""Datasets by name: `DATASETS[config.data.name](data_config, split)` returns a source.

A source is random access (`len`, `source[i]` -> {'image': uint8 [H, W, 3] RGB, 'label': uint8
[H, W] with the dataset's labels already reduced, 'index': i}) with `image_size(i)` (read without
decoding pixels), `name(i)`, `class_names`, `palette` and `num_classes`.
"""

from typing import Any, Callable

import ml_collections

from semseg_jax.data.datasets import ade20k
from semseg_jax.data.datasets import synthetic


def _synthetic(data: ml_collections.ConfigDict, split: str, seed: int) -> Any:
  size = data.synthetic_train_size if split == 'train' else data.synthetic_eval_size
  return synthetic.SyntheticSource(split, size, data.synthetic_image_size, seed=seed,
                                   ignore_index=data.ignore_index)


def _ade20k(data: ml_collections.ConfigDict, split: str, seed: int) -> Any:
  del seed
  return ade20k.ADE20KSource(data.root, split, ignore_index=data.ignore_index)


DATASETS: dict[str, Callable[[ml_collections.ConfigDict, str, int], Any]] = {
    'synthetic': _synthetic,
    'ade20k': _ade20k,
}


# Class names and palette of each dataset, known without reading any file.
CLASSES: dict[str, tuple[tuple[str, ...], Any]] = {
    'synthetic': (synthetic.CLASS_NAMES, synthetic.PALETTE),
    'ade20k': (ade20k.CLASS_NAMES, ade20k.PALETTE),
}


def class_names_and_palette(name: str) -> tuple[tuple[str, ...], Any]:
  """(class names, uint8 [C, 3] palette) of dataset `name` (config.data.name)."""
  if name not in CLASSES:
    raise ValueError(f'config.data.name={name!r} is not a known dataset; expected one of '
                     f'{sorted(CLASSES)}.')
  return CLASSES[name]


def make_source(data: ml_collections.ConfigDict, split: str, seed: int = 0) -> Any:
  """The source of `split` for `config.data`; errors name the field that is wrong."""
  if data.name not in DATASETS:
    raise ValueError(f'config.data.name={data.name!r} is not a known dataset; expected one of '
                     f'{sorted(DATASETS)}.')
  try:
    return DATASETS[data.name](data, split, seed)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'Dataset config.data.name={data.name!r}, config.data.root={data.root!r}, '
                     f'split {split!r}: {e}') from e
