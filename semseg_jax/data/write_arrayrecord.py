"""Writes a split of any supported dataset as ArrayRecord shards (what `arrayrecord:<dir>`
reads; not to be confused with semseg_jax.convert, which converts PyTorch weights).

    python -m semseg_jax.data.write_arrayrecord --config=configs/cityscapes_....py \
        --split=train --out=/data/cityscapes_arrayrecord [--config.data.root=...]

Every example is decoded and checked on the way (as training would), then stored as its
original encoded image bytes plus the reduced label as PNG (see datasets/arrayrecord.py);
`<out>/<split>.json` records the classes, palette, ignore label, shard files, names and sizes.
Train from it with --config.data.name=arrayrecord:<out>. With config.data.skip_bad_examples a
bad example is left out and named in the log (the run fails over config.data.max_bad_fraction).
"""

import json
import math
import multiprocessing
import os
import sys
from typing import Any, Optional

from absl import app
from absl import flags
from absl import logging
import cv2
import ml_collections
import numpy as np
from etils import epath
from ml_collections import config_flags

from semseg_jax import config_files
from semseg_jax.data import datasets
from semseg_jax.data.datasets import arrayrecord
from semseg_jax.data.datasets import files

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined when run as a program: importing the module defines none)."""
  config_flags.DEFINE_config_file('config', None, 'Config file (path or name[:arguments]).',
                                  lock_config=True)
  flags.DEFINE_string('split', None, 'Split to convert (e.g. train, val).')
  flags.DEFINE_string('out', None, 'Output directory (any etils.epath path).')
  flags.DEFINE_integer('examples_per_shard', 1024, 'Records per shard.')
  flags.DEFINE_integer('workers', 0, 'Decode processes (0: all CPU cores).')
  flags.mark_flags_as_required(['config', 'split', 'out'])

_source: Any = None  # The split's source, in each worker process.


def _init_worker(source: Any) -> None:
  global _source
  _source = source


def _encoded_image(source: Any, index: int, image: np.ndarray) -> bytes:
  """The source file's own bytes when it has one; a lossless PNG otherwise."""
  if hasattr(source, 'image_path'):
    return files.read_bytes(source.image_path(index))
  ok, png = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  if not ok:
    raise files.DataError(f'{source.name(index)}: the image cannot be encoded as PNG.')
  return png.tobytes()


def _convert_one(index: int) -> tuple[int, Optional[bytes], Optional[str], tuple[int, int]]:
  """(index, record or None, error or None, (h, w))."""
  try:
    example = _source[index]
    record = arrayrecord.encode_record(_source.name(index),
                                       _encoded_image(_source, index, example['image']),
                                       example['label'])
    return index, record, None, example['label'].shape
  except files.DataError as e:
    return index, None, str(e), (0, 0)


def convert_split(config: ml_collections.ConfigDict, split: str, out: str,
                  examples_per_shard: int = 1024, workers: int = 0) -> dict:
  """Writes `split` of config.data to ArrayRecord shards under `out`; returns the metadata."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  source = datasets.make_source(config.data, split, config.seed)
  out_dir = epath.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  n = len(source)
  workers = workers or os.cpu_count() or 1
  names, sizes, errors = [], [], []
  num_shards = max(1, math.ceil(n / examples_per_shard))
  # Shard k holds the converted examples k * per_shard ... (k + 1) * per_shard - 1 in order.
  per_shard = math.ceil(n / num_shards)
  shards = [arrayrecord.shard_name(split, k, num_shards) for k in range(num_shards)]
  writer, shard, written = None, -1, 0

  def write(record: bytes) -> None:
    nonlocal writer, shard, written
    if written % per_shard == 0:
      if writer is not None:
        writer.close()
      shard += 1
      writer = array_record_module.ArrayRecordWriter(str(out_dir / shards[shard]),
                                                     'group_size:1')
    writer.write(record)
    written += 1

  context = multiprocessing.get_context('spawn')
  with context.Pool(workers, initializer=_init_worker, initargs=(source,)) as pool:
    for index, record, error, hw in pool.imap(_convert_one, range(n), chunksize=8):
      if error is not None:
        if not config.data.skip_bad_examples:
          raise files.DataError(error)
        logging.warning('Leaving out a bad example: %s', error)
        errors.append(error)
        continue
      write(record)
      names.append(source.name(index))
      sizes.append([int(hw[0]), int(hw[1])])
      if (index + 1) % 500 == 0:
        logging.info('%s: %d / %d examples converted.', split, index + 1, n)
  if writer is not None:
    writer.close()
  if errors and len(errors) > config.data.max_bad_fraction * n:
    raise files.DataError(f'{len(errors)} of {n} examples are bad, more than '
                          f'config.data.max_bad_fraction={config.data.max_bad_fraction}; the '
                          f'first: {errors[0]}')
  used = shards[:shard + 1]  # Skipped examples may leave planned shards unwritten.
  metadata = {
      'format_version': arrayrecord.FORMAT_VERSION, 'dataset': config.data.name,
      'variant': config.data.variant, 'split': split, 'num_examples': len(names),
      'class_names': list(source.class_names),
      'palette': np.asarray(source.palette).astype(int).tolist(),
      'ignore_index': int(config.data.ignore_index), 'shards': used, 'names': names,
      'sizes': sizes, 'skipped': errors,
  }
  arrayrecord.metadata_path(out, split).write_text(json.dumps(metadata))
  logging.info('Wrote %d examples of %s to %d shard(s) in %s (%d skipped).', len(names), split,
               len(used), out, len(errors))
  return metadata


def main(argv):
  del argv
  convert_split(FLAGS.config, FLAGS.split, FLAGS.out, FLAGS.examples_per_shard, FLAGS.workers)


def cli() -> None:
  """`python -m semseg_jax.data.write_arrayrecord` and the `semseg-jax-write-arrayrecord`
  command."""
  argv = config_files.checked_argv(sys.argv)
  define_flags()
  app.run(main, argv=argv)


if __name__ == '__main__':
  cli()
