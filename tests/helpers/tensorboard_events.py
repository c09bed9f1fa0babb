"""Reading a run's TensorBoard event files back with TensorBoard's own reader."""

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def read(logdir) -> event_accumulator.EventAccumulator:
  """Every scalar, image, histogram, tensor and audio clip of the event files in `logdir`."""
  everything = {kind: 0 for kind in (event_accumulator.SCALARS, event_accumulator.IMAGES,
                                     event_accumulator.HISTOGRAMS, event_accumulator.TENSORS,
                                     event_accumulator.AUDIO)}
  reader = event_accumulator.EventAccumulator(str(logdir), size_guidance=everything)
  reader.Reload()
  return reader


def hparams(reader: event_accumulator.EventAccumulator) -> dict:
  """The run's hparams as TensorBoard's hparams dashboard reads them (its session start)."""
  content = reader.PluginTagToContent('hparams')['_hparams_/session_start_info']
  start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
  return {k: getattr(v, v.WhichOneof('kind')) for k, v in start.hparams.items()}
