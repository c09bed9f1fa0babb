"""semseg_jax: semantic segmentation in JAX and Flax (README.md; docs/design.md)."""

import importlib
import sys
import types

_CLU_TENSORFLOW_WRITER = 'clu.metric_writers.summary_writer'


def _stand_in_for_clus_tensorflow_writer() -> None:
  """Lets `clu.metric_writers` import without TensorFlow: its TensorFlow writer's module is
  replaced by one whose `SummaryWriter` makes a `tensorboard_writer.TensorBoardWriter` (that
  module's docstring says why). Nothing changes if clu's writers were imported already."""
  if 'clu.metric_writers' in sys.modules or _CLU_TENSORFLOW_WRITER in sys.modules:
    return
  stand_in = types.ModuleType(_CLU_TENSORFLOW_WRITER, 'semseg_jax.tensorboard_writer stands in '
                              "for clu's TensorFlow summary writer.")
  stand_in.SummaryWriter = lambda logdir: importlib.import_module(
      'semseg_jax.tensorboard_writer').TensorBoardWriter(logdir)
  sys.modules[_CLU_TENSORFLOW_WRITER] = stand_in


_stand_in_for_clus_tensorflow_writer()
