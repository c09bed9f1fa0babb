"""Splits packed into ArrayRecord shards by `python -m semseg_jax.data.write_arrayrecord`, read
back through grain: `config.data.name = 'arrayrecord:<directory>'`, where the directory may be
any etils.epath path (gs://bucket/ade20k on a TPU pod).

    <directory>/
      <split>.json                                  metadata: classes, palette, ignore label,
                                                    shard files, names and sizes of examples
      <split>-00000-of-00004.array_record ...       one msgpack record per example

A record is {'name': str, 'image': encoded image bytes (the source file's own JPEG/PNG bytes,
never re-encoded), 'label': PNG bytes of the label as the dataset module reduced it (classes
and the ignore label), 'height', 'width'}. Labels are therefore read as stored, with no
dataset-specific mapping; a different config.data.ignore_index is remapped on read.
"""

import json
from typing import Any, Optional

import cv2
import grain
import msgpack
import numpy as np
from etils import epath

from semseg_jax.data.datasets import files

FORMAT_VERSION = 1


def metadata_path(directory: str, split: str) -> epath.Path:
  return epath.Path(directory) / f'{split}.json'


def shard_name(split: str, shard: int, num_shards: int) -> str:
  return f'{split}-{shard:05d}-of-{num_shards:05d}.array_record'


def encode_record(name: str, image_bytes: bytes, label: np.ndarray) -> bytes:
  ok, png = cv2.imencode('.png', np.ascontiguousarray(label.astype(np.uint8)))
  if not ok:
    raise ValueError(f'{name}: the label cannot be encoded as PNG.')
  return msgpack.packb({'name': name, 'image': image_bytes, 'label': png.tobytes(),
                        'height': int(label.shape[0]), 'width': int(label.shape[1])})


def read_metadata(directory: str, split: str) -> dict:
  path = metadata_path(directory, split)
  if not path.exists():
    available = sorted(p.stem for p in epath.Path(directory).glob('*.json')) if epath.Path(
        directory).exists() else []
    raise ValueError(f'ArrayRecord: {path} does not exist (split {split!r}); write it with '
                     f'python -m semseg_jax.data.write_arrayrecord --split={split} '
                     f'--out={directory}. Splits there: {available}.')
  metadata = json.loads(path.read_text())
  if metadata.get('format_version') != FORMAT_VERSION:
    raise ValueError(f'ArrayRecord: {path} has format_version '
                     f'{metadata.get("format_version")!r}; this code reads {FORMAT_VERSION}.')
  return metadata


class ArrayRecordSource:
  """Random-access examples of one converted split (what grain's MapDataset.source takes)."""

  max_image_pixels: Optional[int] = files.DEFAULT_MAX_IMAGE_PIXELS  # See files.FileSource.

  def __init__(self, directory: str, split: str, ignore_index: int = 255):
    metadata = read_metadata(directory, split)
    self.directory, self.split = str(directory), split
    self.class_names = tuple(metadata['class_names'])
    self.palette = np.asarray(metadata['palette'], np.uint8)
    self.num_classes = len(self.class_names)
    self.ignore_index = files.check_ignore_index(ignore_index, self.num_classes, 'ArrayRecord')
    self.stored_ignore_index = int(metadata['ignore_index'])
    self._names = tuple(metadata['names'])
    self._sizes = tuple(tuple(hw) for hw in metadata['sizes'])
    paths = [str(epath.Path(directory) / shard) for shard in metadata['shards']]
    missing = [p for p in paths if not epath.Path(p).exists()]
    if missing:
      raise ValueError(f'ArrayRecord: shards listed in {metadata_path(directory, split)} are '
                       f'missing: {files.first_names(missing)}.')
    self._records = grain.sources.ArrayRecordDataSource(paths)
    if len(self._records) != len(self._names):
      raise ValueError(f'ArrayRecord: {directory} split {split!r} holds '
                       f'{len(self._records)} records but its metadata lists '
                       f'{len(self._names)} examples.')
    table = np.arange(256, dtype=np.uint8)
    table[self.stored_ignore_index] = self.ignore_index
    self._label_table = table

  def __len__(self) -> int:
    return len(self._names)

  def name(self, index: int) -> str:
    return self._names[int(index)]

  def image_size(self, index: int) -> tuple[int, int]:
    return self._sizes[int(index)]

  def __getitem__(self, index: int) -> dict[str, Any]:
    n = len(self._names)
    if not -n <= int(index) < n:
      raise IndexError(f'index {index} out of range for {self.directory} {self.split} with {n} '
                       f'examples.')
    i = int(index) % n
    what = f'{self.directory} {self.split} record {i} ({self._names[i]})'
    try:
      record = msgpack.unpackb(self._records[i])
    except (ValueError, msgpack.UnpackException) as e:
      raise files.DataError(f'{what}: not a semseg_jax record ({e}).') from e
    image = files.decode_image(record['image'], f'{what} image', self.max_image_pixels)
    files.check_pixels(record['label'], f'{what} label', self.max_image_pixels)
    label = cv2.imdecode(np.frombuffer(record['label'], np.uint8), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
      raise files.DataError(f'{what}: the label does not decode to a single-channel map.')
    bad = (label >= self.num_classes) & (label != self.stored_ignore_index)
    if bad.any():
      raise files.DataError(f'{what}: label values {sorted(set(label[bad].tolist()))[:10]} are '
                            f'neither a class nor the ignore label.')
    files.check_same_size(image, label, f'{what} image', f'{what} label')
    return {'image': image, 'label': self._label_table[label], 'index': i}


def directory(data: Any) -> str:
  path = data.name.split(':', 1)[1] if ':' in data.name else ''
  if not path:
    raise ValueError(f'config.data.name={data.name!r}: expected "arrayrecord:<directory>".')
  return path


def from_config(data: Any, split: str, seed: int = 0) -> ArrayRecordSource:
  """The source of `split` for config.data (name, ignore_index); `seed` is not used."""
  del seed
  return ArrayRecordSource(directory(data), split, data.ignore_index)


def class_names_and_palette(data: Any) -> tuple[tuple[str, ...], np.ndarray]:
  """From the metadata of the train split (or, failing that, the eval split)."""
  path = directory(data)
  split = data.train_split if metadata_path(path, data.train_split).exists() else data.eval_split
  metadata = read_metadata(path, split)
  return tuple(metadata['class_names']), np.asarray(metadata['palette'], np.uint8)
