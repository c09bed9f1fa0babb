"""Any TFDS dataset with an image and a segmentation-mask feature: `config.data.name =
'tfds:<name>'` (a version may follow: 'tfds:<name>:1.0.0').

Examples are read with `tfds.data_source` (random access over ArrayRecord files, no
TensorFlow in the hot path). config.data.tfds names the data_dir and the two features; the
splits are TFDS split strings ('train', 'test', 'train[:90%]'). TFDS masks carry no class
names, so config.data.class_names (and palette, reduce_zero_label or label_colors) describe
the labels as for the folder dataset. The dataset must already be prepared in the data_dir in
the array_record file format (nothing is downloaded).
"""

from typing import Any

import numpy as np

from semseg_jax.data.datasets import files
from semseg_jax.data.datasets import folder


def _as_image(value: Any, what: str) -> np.ndarray:
  image = np.asarray(value)
  if image.ndim == 3 and image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise files.DataError(f'{what}: expected a uint8 [H, W, 3] (or [H, W, 1]) image, got '
                          f'{image.dtype} {image.shape}.')
  return image


class TfdsSource:
  """Random-access (image, label) pairs of one split of a prepared TFDS dataset."""

  def __init__(self, tfds_name: str, split: str, data_dir: str, image_feature: str,
               label_feature: str, label_map: Any, class_names: tuple[str, ...],
               palette: np.ndarray):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
      self._source = tfds.data_source(tfds_name, split=split, data_dir=data_dir or None)
    except Exception as e:  # TFDS raises many kinds; all mean "not found / not readable".
      raise ValueError(f'tfds.data_source({tfds_name!r}, split={split!r}, data_dir='
                       f'{data_dir or None!r}) failed (config.data.tfds.data_dir; the dataset '
                       f'must be prepared there in the array_record format): {e}') from e
    features = self._source.dataset_info.features
    for field, feature in (('image_feature', image_feature), ('label_feature', label_feature)):
      if feature not in features:
        raise ValueError(f'config.data.tfds.{field}={feature!r} is not a feature of '
                         f'{tfds_name}; it has {sorted(features.keys())}.')
    if not len(self._source):
      raise ValueError(f'tfds {tfds_name} split {split!r} has no examples.')
    self.tfds_name, self.split = tfds_name, split
    self.image_feature, self.label_feature = image_feature, label_feature
    self.label_map = label_map
    self.class_names, self.palette = tuple(class_names), np.asarray(palette, np.uint8)
    self.num_classes = len(self.class_names)
    self.ignore_index = label_map.ignore_index
    self._sizes: dict[int, tuple[int, int]] = {}

  def __len__(self) -> int:
    return len(self._source)

  def name(self, index: int) -> str:
    return f'{self.tfds_name.split(":")[0]}_{self.split}_{int(index):06d}'.replace('/', '_')

  def _what(self, index: int, feature: str) -> str:
    return f'tfds {self.tfds_name} split {self.split!r} example {index} feature {feature!r}'

  def __getitem__(self, index: int) -> dict[str, Any]:
    n = len(self._source)
    if not -n <= int(index) < n:
      raise IndexError(f'index {index} out of range for tfds {self.tfds_name} {self.split} '
                       f'with {n} examples.')
    i = int(index) % n
    example = self._source[i]
    image = _as_image(example[self.image_feature], self._what(i, self.image_feature))
    raw = np.asarray(example[self.label_feature])
    if raw.ndim == 3 and raw.shape[2] == 1:
      raw = raw[..., 0]
    label = self.label_map(raw, self._what(i, self.label_feature))
    files.check_same_size(image, label, self._what(i, self.image_feature),
                          self._what(i, self.label_feature))
    self._sizes[i] = label.shape
    return {'image': image, 'label': label, 'index': i}

  def image_size(self, index: int) -> tuple[int, int]:
    """(H, W) of example `index`; TFDS stores no header apart from the pixels, so the first
    call decodes the example (the evaluation plan does so once per example)."""
    i = int(index) % len(self._source)
    if i not in self._sizes:
      self._sizes[i] = tuple(np.shape(self._source[i][self.image_feature])[:2])
    return self._sizes[i]


def tfds_name(data: Any) -> str:
  name = data.name.split(':', 1)[1] if ':' in data.name else ''
  if not name:
    raise ValueError(f'config.data.name={data.name!r}: expected "tfds:<dataset name>".')
  return name


def from_config(data: Any, split: str, seed: int = 0) -> TfdsSource:
  """The source of `split` for config.data (name, tfds, classes); `seed` is not used."""
  del seed
  names, palette = folder.class_names_and_palette(data)
  return TfdsSource(tfds_name(data), split, files.optional_str(data.tfds.data_dir),
                    data.tfds.image_feature, data.tfds.label_feature,
                    folder.label_map(data, len(names)), names, palette)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  tfds_name(data)
  return folder.class_names_and_palette(data)
