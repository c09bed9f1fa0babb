"""Logging shared by the command-line entry points: the metric writer, the config as
TensorBoard hparams, and the filter that quiets chatty libraries."""

import contextlib
import logging
import os
from collections.abc import Iterator

import jax
import ml_collections
from absl import logging as absl_logging
from clu import metric_writers

from semseg_jax import tensorboard_writer

_NOISY_LIBRARIES = ('orbax', 'grain')


class QuietLibraries(logging.Filter):
  """Drops INFO records from orbax and grain (dozens per checkpoint); keeps their warnings."""

  def filter(self, record: logging.LogRecord) -> bool:
    noisy = any(f'{os.sep}{name}{os.sep}' in record.pathname for name in _NOISY_LIBRARIES)
    # Python's level numbers: absl's own constants (WARNING == 1) are another scale.
    return not (noisy and record.levelno < logging.WARNING)


def quiet_libraries() -> None:
  """Installs QuietLibraries on absl's logger, through which orbax and grain log."""
  absl_logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, QuietLibraries) for f in absl_logger.filters):
    absl_logger.addFilter(QuietLibraries())


def make_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard event files in `workdir` (written without TensorFlow) and log lines, both in a
  background thread, on process 0; a writer that writes nothing elsewhere."""
  if jax.process_index() == 0:
    return metric_writers.AsyncMultiWriter([metric_writers.LoggingWriter(),
                                            tensorboard_writer.TensorBoardWriter(workdir)])
  return metric_writers.MultiWriter([])


@contextlib.contextmanager
def writer_for(workdir: str) -> Iterator[metric_writers.MetricWriter]:
  """`make_writer(workdir)`, closed (its event files flushed and shut) when the block ends,
  however it ends: a writer left to the interpreter's exit can no longer start the thread its
  last flush needs."""
  writer = make_writer(workdir)
  try:
    yield writer
  finally:
    writer.close()


def flatten_config(config: ml_collections.ConfigDict) -> dict:
  """Config fields as 'a.b' -> scalar or string, for TensorBoard hparams."""
  flat = {}
  def visit(prefix, node):
    for key, value in node.items():
      name = f'{prefix}{key}'
      if isinstance(value, ml_collections.ConfigDict):
        visit(f'{name}.', value)
      else:
        flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
  visit('', config)
  return flat
