"""What every file-backed dataset shares: decoding, label mapping, pairing files, a source.

A dataset module finds its (name, image file, label file) triples for a split and says how raw
label values become classes (a `LabelMap` for index PNGs, a `ColourMap` for RGB masks);
`FileSource` does the rest: random access for grain, sizes from headers, and strict checks.
Every problem with one example raises `DataError` naming the file(s), so the pipeline can
either stop or (with `config.data.skip_bad_examples`) count and skip it. Problems with a whole
split (a missing directory or split list, no files) raise ValueError naming the expected path.
"""

import contextlib
import io
import os
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np
from PIL import Image

LIST_AT_MOST = 5  # Offending files or values named in an error message.
_INVALID = np.uint16(0xFFFF)  # Lookup-table entry of a raw value that is no class.
# Decode as stored: EXIF orientation would turn an image away from its label.
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


# A file whose header claims more pixels than this is a bad file (DataError), not gigabytes
# allocated for decoding it: a "decompression bomb" (a few kB of PNG can claim 30000 x 30000).
# PIL's own default limit (about 9459 x 9459); config.data.max_image_pixels sets it per run
# (None: no limit, for trusted data only).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

# PIL's errors for a file it cannot read (UnidentifiedImageError is an OSError).
PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DataError(ValueError):
  """One example cannot be used (unreadable file, size mismatch, unknown label values)."""


def first_names(names: Sequence[Any], at_most: int = LIST_AT_MOST) -> str:
  """'a, b, c, ... (n more)': the first few of a list, for error messages."""
  names = [str(n) for n in names]
  shown = ', '.join(names[:at_most])
  if len(names) > at_most:
    shown += f', ... ({len(names) - at_most} more)'
  return shown


def check_ignore_index(ignore_index: Any, num_classes: int, dataset: str) -> int:
  """ignore_index as an int; it must be uint8 and not one of the dataset's classes."""
  if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
    raise ValueError(f'{dataset}: ignore_index must be an integer, got {ignore_index!r}.')
  if not num_classes <= int(ignore_index) <= 255:
    raise ValueError(f'{dataset}: ignore_index={ignore_index} must lie in [{num_classes}, 255]: '
                     f'labels are uint8 and 0..{num_classes - 1} are classes.')
  return int(ignore_index)


# --- Decoding -------------------------------------------------------------------------------


@contextlib.contextmanager
def open_image(file: str | BinaryIO, name: str,
               max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS) -> Iterator[Image.Image]:
  """PIL's lazy open of an image (a path or a binary file): only the header is read. A file
  PIL cannot read, or whose header claims more than `max_pixels` pixels, is a DataError naming
  `name`."""
  if Image.MAX_IMAGE_PIXELS is not None and (max_pixels is None
                                             or max_pixels > Image.MAX_IMAGE_PIXELS):
    # PIL refuses more than twice its own (process-wide) limit before we could look: raise it
    # to ours (None: no limit), which is checked below. It only ever grows, so threads and
    # runs agree.
    Image.MAX_IMAGE_PIXELS = max_pixels
  try:
    image = Image.open(file)
  except Image.DecompressionBombError as e:
    raise DataError(f'{name}: its header claims more than config.data.max_image_pixels='
                    f'{max_pixels} pixels (PIL: {e}): a decompression bomb, or raise the field '
                    f'to read it.') from e
  except PIL_ERRORS as e:
    raise DataError(f'{name}: cannot be read as an image ({e}).') from e
  with image:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
      raise DataError(f'{name}: its header claims {width} x {height} = {width * height} '
                      f'pixels, over config.data.max_image_pixels={max_pixels}: a '
                      f'decompression bomb, or raise the field to read it.')
    yield image


def decode_image(data: bytes, name: str,
                 max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
  """Encoded image bytes (JPEG, PNG, ... as OpenCV reads them) -> uint8 [H, W, 3] RGB.

  Greyscale, palette and CMYK files come out RGB; an alpha channel is dropped. `name` (the
  file) is named in the DataError raised for bytes that do not decode or whose header claims
  more than `max_pixels` pixels (checked before any pixel is decoded).
  """
  check_pixels(data, name, max_pixels)
  image = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_FLAGS) if data else None
  if image is None or image.ndim != 3 or image.dtype != np.uint8:
    raise DataError(f'{name}: cannot be decoded as an 8-bit image ({len(data)} bytes).')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_pixels(data: bytes, name: str, max_pixels: Optional[int]) -> None:
  """DataError naming `name` when the header of encoded image bytes claims more than
  `max_pixels` pixels. Formats PIL cannot parse are left to the decoder (OpenCV keeps its own
  limit, CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)."""
  if max_pixels is None or not data:
    return
  try:
    with open_image(io.BytesIO(data), name, max_pixels):
      pass
  except DataError as e:
    if isinstance(e.__cause__, Image.UnidentifiedImageError):
      return
    raise


def read_bytes(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise DataError(f'{path}: cannot be read ({e.strerror or e}).') from e


def read_image(path: str, max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
  """The image file at `path` as uint8 [H, W, 3] RGB; DataError names the file."""
  return decode_image(read_bytes(path), path, max_pixels)


def read_raw_label(path: str, max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
                   ) -> np.ndarray:
  """A label file's pixels as stored: [H, W] integers for single-channel and palette PNGs
  (palette indices, not colours), [H, W, 3] uint8 for RGB masks; DataError names the file."""
  with open_image(path, path, max_pixels) as image:
    try:
      if image.mode in ('RGBA', 'LA', 'PA'):
        image = image.convert(image.mode[:-1] if image.mode != 'PA' else 'P')
      if image.mode not in ('1', 'L', 'P', 'I', 'I;16', 'I;16B', 'I;16L', 'RGB'):
        raise DataError(f'{path}: label image has PIL mode {image.mode!r}; expected a '
                        f'single-channel, palette or RGB PNG.')
      raw = np.array(image)
    except DataError:
      raise
    except PIL_ERRORS as e:
      raise DataError(f'{path}: cannot be read as a label image ({e}).') from e
  return raw.astype(np.uint8) if raw.dtype == bool else raw


def image_size(path: str, max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
               ) -> tuple[int, int]:
  """(H, W) of an image file from its header; no pixels are decoded. DataError names a file
  PIL cannot read or one over `max_pixels`."""
  with open_image(path, path, max_pixels) as image:
    width, height = image.size
  return height, width


# --- Label mapping --------------------------------------------------------------------------


class LabelMap:
  """Raw label value -> class id (or ignore_index) through a lookup table.

  `table` maps each raw value that may occur to a class in 0..num_classes-1 or to
  ignore_index; any other raw value is an error naming the file, the values and their pixel
  counts. Applied once, in the dataset's source: nothing downstream maps labels again.
  """

  def __init__(self, table: dict[int, int], num_classes: int, ignore_index: int):
    self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
    size = max(256, max(table) + 1 if table else 0)
    self.lut = np.full(size, _INVALID, np.uint16)
    for raw, cls in table.items():
      if not (0 <= cls < num_classes or cls == ignore_index):
        raise ValueError(f'label table maps {raw} to {cls}, neither a class (0..'
                         f'{num_classes - 1}) nor ignore_index={ignore_index}.')
      self.lut[raw] = cls
    self.lut.setflags(write=False)

  @classmethod
  def identity(cls, num_classes: int, ignore_index: int, raw_ignore: Iterable[int] = (255,)):
    """Labels already hold class ids; `raw_ignore` values (255) become ignore_index."""
    table = {k: k for k in range(num_classes)}
    table.update({int(v): ignore_index for v in raw_ignore})
    return cls(table, num_classes, ignore_index)

  @classmethod
  def zero_ignored(cls, num_classes: int, ignore_index: int, raw_ignore: Iterable[int] = ()):
    """mmseg's reduce_zero_label: raw 0 -> ignore, k -> k - 1 for k in 1..num_classes."""
    table = {k + 1: k for k in range(num_classes)}
    table.update({0: ignore_index, **{int(v): ignore_index for v in raw_ignore}})
    return cls(table, num_classes, ignore_index)

  def valid_values(self) -> list[int]:
    return [int(v) for v in np.flatnonzero(self.lut != _INVALID)]

  def __call__(self, raw: np.ndarray, path: str) -> np.ndarray:
    """raw integer [H, W] -> uint8 [H, W] classes; DataError names `path` on bad values."""
    if raw.ndim != 2:
      raise DataError(f'{path}: label has shape {raw.shape}; expected a single-channel '
                      f'[H, W] image of class indices.')
    if not np.issubdtype(raw.dtype, np.integer):
      raise DataError(f'{path}: label has dtype {raw.dtype}; expected integers.')
    if raw.size and (raw.min() < 0 or raw.max() >= len(self.lut)):
      out = np.full(raw.shape, _INVALID, np.uint16)
      inside = (raw >= 0) & (raw < len(self.lut))
      out[inside] = self.lut[raw[inside]]
    else:
      out = self.lut[raw]
    if raw.size and out.max() == _INVALID:
      values, counts = np.unique(raw[out == _INVALID], return_counts=True)
      listed = first_names([f'{v} ({c} px)' for v, c in zip(values, counts)], 10)
      raise DataError(f'{path}: label values {listed} are neither a class nor the ignore '
                      f'label; expected {_ranges(self.valid_values())}.')
    return out.astype(np.uint8)


class ColourMap:
  """RGB mask colour -> class id (or ignore_index); any other colour is an error."""

  def __init__(self, colours: dict[tuple[int, int, int], int], num_classes: int,
               ignore_index: int):
    self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
    self.colours = {tuple(int(c) for c in k): int(v) for k, v in colours.items()}
    for colour, cls in self.colours.items():
      if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
        raise ValueError(f'colour {colour} is not an (r, g, b) triple of 0..255.')
      if not (0 <= cls < num_classes or cls == ignore_index):
        raise ValueError(f'colour {colour} maps to {cls}, neither a class nor ignore_index.')
    self._lut = None  # 2**24 entries, built on first use in each process (not pickled).

  def __getstate__(self):
    return {**self.__dict__, '_lut': None}

  def _table(self) -> np.ndarray:
    if self._lut is None:
      lut = np.full(1 << 24, _INVALID, np.uint16)
      for (r, g, b), cls in self.colours.items():
        lut[(r << 16) | (g << 8) | b] = cls
      self._lut = lut
    return self._lut

  def __call__(self, raw: np.ndarray, path: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> uint8 [H, W] classes; DataError names `path` on bad colours."""
    if raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint8:
      raise DataError(f'{path}: label has shape {raw.shape} and dtype {raw.dtype}; expected '
                      f'an 8-bit RGB colour mask.')
    code = ((raw[..., 0].astype(np.int32) << 16) | (raw[..., 1].astype(np.int32) << 8)
            | raw[..., 2])
    out = self._table()[code]
    if out.size and out.max() == _INVALID:
      codes, counts = np.unique(code[out == _INVALID], return_counts=True)
      listed = first_names([f'({c >> 16}, {(c >> 8) & 255}, {c & 255}) ({n} px)'
                            for c, n in zip(codes, counts)], 10)
      raise DataError(f'{path}: mask colours {listed} are in no class colour table '
                      f'({len(self.colours)} colours known).')
    return out.astype(np.uint8)


def _ranges(values: Sequence[int]) -> str:
  """[0, 1, 2, 5, 255] -> '0..2, 5, 255'."""
  parts, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      parts.append(str(v) if v == start else f'{start}..{v}')
      start = None
  return ', '.join(parts)


# --- Finding files --------------------------------------------------------------------------


def list_files(directory: str, suffix: str, recursive: bool = False) -> dict[str, str]:
  """Key -> path of the regular files under `directory` whose name ends with `suffix`. The
  key is the path relative to `directory` without the suffix ('aachen/aachen_000000_000019'
  for a recursive listing); hidden files are left out."""
  found = {}
  def scan(path: str, prefix: str) -> None:
    with os.scandir(path) as entries:
      for entry in entries:
        if entry.name.startswith('.'):
          continue
        if recursive and entry.is_dir():
          scan(entry.path, prefix + entry.name + '/')
        elif entry.name.endswith(suffix) and entry.is_file():
          found[prefix + entry.name[:len(entry.name) - len(suffix)]] = entry.path
  scan(directory, '')
  return found


def require_dirs(dataset: str, split: str, *directories: str, hint: str = '') -> None:
  """ValueError naming every missing directory of a split."""
  missing = [d for d in directories if not os.path.isdir(d)]
  if missing:
    raise ValueError(f'{dataset}: split {split!r} needs {" and ".join(missing)}, which '
                     f'{"does" if len(missing) == 1 else "do"} not exist.{hint}')


def pair_files(dataset: str, images: dict[str, str], labels: dict[str, str], image_dir: str,
               label_dir: str, label_noun: str = 'label') -> list[str]:
  """The sorted keys found in both listings; ValueError listing images without a label and
  labels without an image (nothing is silently dropped). `label_noun` names labels in the
  message ('annotation' for ADE20K)."""
  unlabelled = sorted(images.keys() - labels.keys())
  orphans = sorted(labels.keys() - images.keys())
  problems = []
  if unlabelled:
    problems.append(f'{len(unlabelled)} image(s) in {image_dir} have no {label_noun} in '
                    f'{label_dir}: {first_names([images[k] for k in unlabelled])}')
  if orphans:
    problems.append(f'{len(orphans)} {label_noun}(s) in {label_dir} have no image in '
                    f'{image_dir}: {first_names([labels[k] for k in orphans])}')
  if problems:
    raise ValueError(f'{dataset}: images and {label_noun}s do not pair up: '
                     + '; '.join(problems) + '.')
  return sorted(images)


def read_split_list(path: str, dataset: str) -> list[str]:
  """Ids listed one per line in a split file (blank lines skipped); ValueError names a missing
  or empty file."""
  if not os.path.isfile(path):
    raise ValueError(f'{dataset}: split list {path} does not exist.')
  with open(path) as f:
    ids = [line.split()[0] for line in f if line.strip()]
  if not ids:
    raise ValueError(f'{dataset}: split list {path} is empty.')
  return ids


def require_files(dataset: str, kind: str, paths: Sequence[str], listed_in: str) -> None:
  """ValueError naming the listed files that do not exist."""
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise ValueError(f'{dataset}: {len(missing)} {kind}(s) listed in {listed_in} do not exist: '
                     f'{first_names(missing)}.')


# --- The source -----------------------------------------------------------------------------


class FileSource:
  """Random-access (image, label) pairs from files; what grain's MapDataset.source takes.

  Item i is {'image': uint8 [H, W, 3] RGB, 'label': uint8 [H, W] (classes, ignore_index),
  'index': i}. Only names and paths are kept, so the source pickles cheaply into grain worker
  processes; files are opened per item. An unreadable file, one whose header claims more than
  `max_image_pixels` pixels, an image whose size differs from its label's, or a label value
  that is neither a class nor the ignore label raises DataError naming the file(s).
  """

  # Set from config.data.max_image_pixels by datasets.make_source; travels with the source
  # into grain's worker processes.
  max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS

  def __init__(self, dataset: str, split: str, names: Sequence[str],
               image_paths: Sequence[str], label_paths: Sequence[str],
               label_map: Any, class_names: Sequence[str], palette: np.ndarray):
    if not len(names) == len(image_paths) == len(label_paths):
      raise ValueError('names, image_paths and label_paths must have the same length.')
    if not names:
      raise ValueError(f'{dataset}: split {split!r} has no examples.')
    if len(class_names) != label_map.num_classes or len(palette) != len(class_names):
      raise ValueError(f'{dataset}: {len(class_names)} class names, {len(palette)} palette '
                       f'colours and {label_map.num_classes} label classes must agree.')
    self.dataset, self.split = dataset, split
    self._names = tuple(names)
    self._image_paths, self._label_paths = tuple(image_paths), tuple(label_paths)
    self.label_map = label_map
    self.class_names = tuple(class_names)
    self.palette = np.asarray(palette, np.uint8)
    self.num_classes = len(self.class_names)
    self.ignore_index = label_map.ignore_index

  def __len__(self) -> int:
    return len(self._names)

  def __repr__(self) -> str:
    return f'FileSource({self.dataset}, split={self.split!r}, len={len(self)})'

  def _index(self, index: int) -> int:
    i = int(index)
    n = len(self._names)
    if not -n <= i < n:
      raise IndexError(f'index {index} out of range for {self.dataset} {self.split} with {n} '
                       f'examples.')
    return i % n

  def name(self, index: int) -> str:
    return self._names[self._index(index)]

  def image_path(self, index: int) -> str:
    return self._image_paths[self._index(index)]

  def label_path(self, index: int) -> str:
    return self._label_paths[self._index(index)]

  def image_size(self, index: int) -> tuple[int, int]:
    """(H, W) of example `index`, read from the image file's header."""
    return image_size(self.image_path(index), self.max_image_pixels)

  def read_label(self, index: int) -> np.ndarray:
    """The mapped label of example `index` (uint8 [H, W]) without decoding the image."""
    path = self.label_path(index)
    return self.label_map(read_raw_label(path, self.max_image_pixels), path)

  def __getitem__(self, index: int) -> dict[str, Any]:
    i = self._index(index)
    image_path, label_path = self._image_paths[i], self._label_paths[i]
    image = read_image(image_path, self.max_image_pixels)
    label = self.label_map(read_raw_label(label_path, self.max_image_pixels), label_path)
    check_same_size(image, label, image_path, label_path)
    return {'image': image, 'label': label, 'index': i}


def check_same_size(image: np.ndarray, label: np.ndarray, image_name: str,
                    label_name: str) -> None:
  if image.shape[:2] != label.shape[:2]:
    raise DataError(f'image {image_name} is {image.shape[0]}x{image.shape[1]} (HxW) but its '
                    f'label {label_name} is {label.shape[0]}x{label.shape[1]}; they must be '
                    f'the same size.')


def default_palette(num_classes: int, seed: int = 0) -> np.ndarray:
  """Distinct-looking colours for datasets that bring none (uint8 [C, 3])."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(num_classes, 3), dtype=np.uint8)


def optional_str(value: Optional[str]) -> str:
  return '' if value is None else str(value)


# --- Tiny example trees ---------------------------------------------------------------------
# Each dataset module's `write_example_tree(directory, data)` writes a few small examples in its
# release's exact layout and label encoding (for tests and smoke runs); these are its tools.

# (H, W) of the examples of a tree, in turn: landscape, portrait, square, odd landscape, odd
# portrait. The smallest holds 41 * 53 = 2173 pixels: room for every raw label value.
EXAMPLE_SIZES: tuple[tuple[int, int], ...] = ((48, 64), (72, 40), (56, 56), (41, 53), (61, 45))
_EXAMPLE_CELL = 8  # Side of the square cells that make up the regions of an example label.
# One fixed colour per region value, the same in every image: the labels can be learnt.
_EXAMPLE_COLOURS = np.random.default_rng(1234).integers(0, 256, size=(256, 3))


def example_splits(data: Any, known: Optional[Sequence[str]], dataset: str,
                   splits: Optional[Sequence[str]] = None) -> tuple[str, ...]:
  """The splits an example tree holds: `splits`, or config.data.train_split and eval_split
  (once each); ValueError naming the field of a split not in `known` (None: any split)."""
  if splits is None:
    named = (('config.data.train_split', data.train_split),
             ('config.data.eval_split', data.eval_split))
  else:
    named = tuple(('split', s) for s in splits)
  for field, split in named:
    if known is not None and split not in known:
      raise ValueError(f'{dataset}: {field}={split!r} is not a split of the dataset; expected '
                       f'one of {tuple(known)}.')
  return tuple(dict.fromkeys(split for _, split in named))


def example_size(index: int) -> tuple[int, int]:
  """(H, W) of the `index`-th example of a tree: EXAMPLE_SIZES in turn."""
  return EXAMPLE_SIZES[index % len(EXAMPLE_SIZES)]


def example_regions(rng: np.random.Generator, size: Sequence[int], count: int) -> np.ndarray:
  """int [H, W] map of square regions of values 0..count-1, each value occurring at least once
  (a permutation of them fills the first pixels): index into a dataset's raw label values."""
  height, width = size
  if count > height * width:
    raise ValueError(f'{count} values do not fit in a {height}x{width} example.')
  cells = rng.integers(0, count, size=(-(-height // _EXAMPLE_CELL), -(-width // _EXAMPLE_CELL)))
  regions = np.kron(cells, np.ones((_EXAMPLE_CELL, _EXAMPLE_CELL), np.int64))[:height, :width]
  regions.flat[:count] = rng.permutation(count)
  return regions


def example_borders(regions: np.ndarray) -> np.ndarray:
  """bool [H, W]: pixels with a 4-neighbour in another region (VOC-style object borders)."""
  padded = np.pad(regions, 1, mode='edge')
  centre = padded[1:-1, 1:-1]
  return ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre)
          | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))


def example_image(rng: np.random.Generator, regions: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] RGB: each region's fixed colour (by value modulo 256) plus noise."""
  image = _EXAMPLE_COLOURS[regions % 256] + rng.normal(0.0, 12.0, size=(*regions.shape, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def save_image(path: str, image: np.ndarray) -> None:
  """uint8 [H, W, 3] RGB -> a JPEG (quality 90) or, for other suffixes, a file of the format
  the suffix names (.png); the directory is made."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if path.lower().endswith(('.jpg', '.jpeg')):
    Image.fromarray(image).save(path, format='JPEG', quality=90)
  else:
    Image.fromarray(image).save(path)


def save_label(path: str, label: np.ndarray,
               palette: Optional[Sequence[Sequence[int]]] = None) -> None:
  """A label PNG as stored: uint8 [H, W] -> mode L, or mode P with `palette` ((r, g, b) per
  index, at most 256); uint8 [H, W, 3] -> an RGB colour mask. The directory is made."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  label = np.ascontiguousarray(label, np.uint8)
  image = Image.fromarray(label)
  if palette is not None:
    flat = [int(c) for colour in palette for c in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))  # Mode L becomes P: indices kept.
  image.save(path, format='PNG')


def write_lines(path: str, lines: Iterable[str]) -> None:
  """A split list: one entry a line; the directory is made."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(''.join(f'{line}\n' for line in lines))
