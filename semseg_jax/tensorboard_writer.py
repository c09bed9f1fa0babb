"""TensorBoard event files without TensorFlow: clu's `MetricWriter` interface over tensorboardX.

clu 0.0.12, its newest release, imports TensorFlow in `clu/metric_writers/__init__.py` for its one
writer that needs it, `clu.metric_writers.summary_writer`; `clu.periodic_actions` imports that
package too. `semseg_jax/__init__.py` therefore puts a stand-in for that one submodule in
`sys.modules` before anything imports clu, whose `SummaryWriter` makes a `TensorBoardWriter`: the
rest of clu (its writers, `create_default_writer`, metrics, periodic actions) then imports and
works with no TensorFlow installed. Drop the stand-in once clu imports TensorFlow lazily
(google/CommonLoopUtils pull request 358).

tensorboardX imports PyTorch, where it is installed, as it is imported (only to accept torch
tensors; this writer passes numpy arrays): 2.9 s of every command's start on a 2-core CPU with
torch 2.13 installed. `_tensorboardx_without_torch` imports it with `import torch` failing,
then lets torch import as usual again.
"""

import importlib
import io
import sys
import wave
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
from absl import logging
from clu.metric_writers import interface
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.util import tensor_util


def _tensorboardx_without_torch() -> ModuleType:
  """tensorboardX, imported while `import torch` raises ImportError (as with no torch
  installed) unless torch is imported already; afterwards torch imports normally."""
  if 'torch' in sys.modules or 'tensorboardX' in sys.modules:
    return importlib.import_module('tensorboardX')
  sys.modules['torch'] = None  # type: ignore[assignment]
  try:
    return importlib.import_module('tensorboardX')
  finally:
    del sys.modules['torch']


tensorboardX = _tensorboardx_without_torch()
from tensorboardX.proto import summary_pb2  # pylint: disable=g-import-not-at-top,wrong-import-position


def _wav(clip: np.ndarray, sample_rate: int) -> bytes:
  """[frames, channels] floats in [-1, 1] as a 16-bit PCM WAV file (tensorboardX's own audio
  summary needs the soundfile package)."""
  pcm = np.round(np.clip(clip, -1, 1) * 32767).astype('<i2')
  buffer = io.BytesIO()
  with wave.open(buffer, 'wb') as wav:
    wav.setnchannels(clip.shape[1])
    wav.setsampwidth(2)
    wav.setframerate(sample_rate)
    wav.writeframes(pcm.tobytes())
  return buffer.getvalue()


def _hparam_value(value: Any) -> bool | int | float | str:
  return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardWriter(interface.MetricWriter):
  """Writes scalars, images, audio, text, histograms, hparams and raw tensor summaries to an
  event file in `logdir`, as clu's TensorFlow `SummaryWriter` does. Departures: several images
  under one key become one grid image (tensorboardX's `add_images`), several audio clips under
  one key are written as `key/0`, `key/1`, ... (16-bit WAV); videos are not written (a warning says so, as in
  clu's own writer)."""

  def __init__(self, logdir: str):
    super().__init__()
    self._writer = tensorboardX.SummaryWriter(logdir=str(logdir), flush_secs=30)

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Mapping[str, Any] | None = None):
    for key, value in values.items():
      entry = tb_summary_pb2.Summary.Value(tag=key,
                                           tensor=tensor_util.make_tensor_proto(np.asarray(value)))
      md = (metadata or {}).get(key)
      if md is not None:
        entry.metadata.ParseFromString(md if isinstance(md, bytes) else md.SerializeToString())
      # tensorboard's protos build the tensor; tensorboardX's file writer takes its own class.
      summary = tb_summary_pb2.Summary(value=[entry]).SerializeToString()
      self._writer.file_writer.add_summary(summary_pb2.Summary.FromString(summary), step)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    for key, value in scalars.items():
      self._writer.add_scalar(key, float(np.asarray(value)), step)

  def write_images(self, step: int, images: Mapping[str, Any]):
    for key, value in images.items():
      array = np.asarray(value)
      self._writer.add_images(key, array if array.ndim == 4 else array[None], step,
                              dataformats='NHWC')

  def write_videos(self, step: int, videos: Mapping[str, Any]):
    logging.log_first_n(logging.WARNING,
                        'TensorBoardWriter does not write videos (%s).', 1, ', '.join(videos))

  def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int):
    for key, value in audios.items():
      for i, clip in enumerate(np.asarray(value, np.float32)):
        audio = summary_pb2.Summary.Audio(
            sample_rate=sample_rate, num_channels=clip.shape[1], length_frames=clip.shape[0],
            encoded_audio_string=_wav(clip, sample_rate), content_type='audio/wav')
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f'{key}/{i}',
                                                                       audio=audio)])
        self._writer.file_writer.add_summary(summary, step)

  def write_texts(self, step: int, texts: Mapping[str, str]):
    """Under the key itself, as TensorFlow's text summary (tensorboardX's appends '/text_summary')."""
    metadata = text_metadata.create_summary_metadata(display_name='', description='')
    self.write_summaries(step, {key: np.asarray(value.encode()) for key, value in texts.items()},
                         {key: metadata for key in texts})

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None):
    for key, value in arrays.items():
      bins = (num_buckets or {}).get(key) or 'tensorflow'
      self._writer.add_histogram(key, np.asarray(value, np.float64), step, bins=bins)

  def write_hparams(self, hparams: Mapping[str, Any]):
    """The hparams dashboard's experiment and session start for this run; a value that is not a
    bool, number or string is written as its str()."""
    experiment, session_start, _ = tensorboardX.summary.hparams(
        {k: _hparam_value(v) for k, v in hparams.items()}, {})
    self._writer.file_writer.add_summary(experiment)
    self._writer.file_writer.add_summary(session_start)

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()
