"""Entry point: `python -m semseg_jax.main --config=configs/quickstart.py --workdir=DIR` (or
`semseg-jax --config=quickstart --workdir=DIR` where the package is installed).

Modes: train (trains, running the evaluators of config.evals along the way; resumes from the
latest checkpoint in the workdir), eval (restores a checkpoint and runs the evaluators), predict
(label maps of config.predict.inputs with a checkpoint), benchmark (parameters, GFLOPs, compile
time and images/s at the config's crop), data_benchmark (input-pipeline images/s per worker
count and per core), check_data (every example of a split read and checked; class frequencies
and weights). Config fields are overridden with --config.<field>=<value>; an unknown field is an
error that names it.
"""

import os
import sys

from semseg_jax import huge_pages

# Run as the command (`python -m semseg_jax.main`, or the `semseg-jax` script), not imported:
# first of all, start again with huge pages for XLA's buffers where that helps (huge_pages.py).
if __name__ == '__main__' or os.path.basename(sys.argv[0]) == 'semseg-jax':
  huge_pages.restart_with_huge_pages()

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's start-up noise, where tfds imports it.

from semseg_jax import xla_flags  # pylint: disable=g-import-not-at-top

xla_flags.set_defaults()  # Before jax starts a backend.

import jax  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top
from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

from semseg_jax import checkpointing  # pylint: disable=g-import-not-at-top
from semseg_jax import config_files  # pylint: disable=g-import-not-at-top
from semseg_jax import logs  # pylint: disable=g-import-not-at-top
from semseg_jax import sharding  # pylint: disable=g-import-not-at-top
from semseg_jax import workdir_lock  # pylint: disable=g-import-not-at-top

MODES = ('train', 'eval', 'predict', 'benchmark', 'data_benchmark', 'check_data')

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined when run as a program, so that importing `run` defines none)."""
  config_flags.DEFINE_config_file('config', None, 'Config file (path or name[:arguments]).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and metrics.')
  flags.DEFINE_enum('mode', 'train', MODES, 'What to run.')
  flags.DEFINE_string('coordinator_address', None,
                      'host:port of process 0, for multi-process runs.')
  flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.')
  flags.DEFINE_integer('process_id', None, 'This process in a multi-process run.')
  flags.mark_flags_as_required(['config', 'workdir'])


def run(mode: str, config: ml_collections.ConfigDict, workdir: str):
  """Prepares `config` (checked, derived fields filled in), logs it and runs `mode`."""
  # Imported here, after jax.distributed.initialize in main(), so that no backend is touched
  # before it.
  from semseg_jax import evaluate  # pylint: disable=g-import-not-at-top
  from semseg_jax import prepare  # pylint: disable=g-import-not-at-top
  from semseg_jax import train  # pylint: disable=g-import-not-at-top
  from semseg_jax.data import check  # pylint: disable=g-import-not-at-top
  from semseg_jax.tools import input_benchmark  # pylint: disable=g-import-not-at-top
  from semseg_jax.tools import model_benchmark  # pylint: disable=g-import-not-at-top
  prepare.prepare_config(config, mode, workdir)
  logging.info('semseg_jax %s on %d devices (%d processes); workdir %s; config:\n%s', mode,
               jax.device_count(), jax.process_count(), workdir, config)
  if mode == 'train':
    with workdir_lock.hold(workdir), logs.writer_for(workdir) as writer:  # One run per workdir.
      return train.train_and_evaluate(config, workdir, writer)
  if mode in ('eval', 'predict'):
    modes = {'eval': evaluate.evaluate_checkpoint, 'predict': evaluate.predict_images}
    with logs.writer_for(workdir) as writer:
      return modes[mode](config, workdir, writer)
  modes = {'benchmark': model_benchmark.run, 'data_benchmark': input_benchmark.run,
           'check_data': check.run}
  return modes[mode](config, workdir)


def main(argv):
  del argv
  logs.quiet_libraries()
  logging.info('GLIBC_TUNABLES=%s (huge_pages.py)', os.environ.get('GLIBC_TUNABLES', ''))
  arguments = sharding.distributed_arguments(FLAGS.coordinator_address, FLAGS.num_processes,
                                             FLAGS.process_id, os.environ)
  if arguments is not None:
    jax.distributed.initialize(**arguments)
  try:
    run(FLAGS.mode, FLAGS.config, FLAGS.workdir)
  except checkpointing.StorageFull as e:  # One line, not the libraries' tracebacks.
    logging.error('%s', e)
    sys.exit(f'semseg_jax: {e}')


def cli() -> None:
  """`python -m semseg_jax.main` and the `semseg-jax` command."""
  argv = config_files.checked_argv(sys.argv)
  define_flags()
  jax.config.config_with_absl()
  app.run(main, argv=argv)


if __name__ == '__main__':
  cli()
