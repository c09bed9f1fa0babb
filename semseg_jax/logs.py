"""Log filtering shared by the command-line entry points."""

import logging
import os

from absl import logging as absl_logging

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
