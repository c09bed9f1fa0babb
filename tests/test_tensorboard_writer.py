"""The TensorBoard writer without TensorFlow: what it writes is read back by TensorBoard's own
event reader, and clu's writers and periodic actions import in a process where TensorFlow cannot
be imported."""

import io
import subprocess
import sys
import wave

import numpy as np
import pytest
from PIL import Image
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.util import tensor_util

from semseg_jax import tensorboard_writer
from tests.helpers import run_main
from tests.helpers import tensorboard_events


def test_every_kind_of_value_reads_back(tmp_path):
  rng = np.random.default_rng(0)
  picture = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  grey = rng.random((2, 4, 6, 1)).astype(np.float32)
  values = rng.normal(size=1000)
  writer = tensorboard_writer.TensorBoardWriter(str(tmp_path))
  writer.write_hparams({'optimizer.lr': 0.01, 'model.name': 'segformer', 'train.ema': False,
                        'train.num_steps': 100, 'eval.scales': (0.5, 1.0)})
  writer.write_scalars(3, {'train/loss': np.float32(0.25), 'val/mIoU': 41.5})
  writer.write_scalars(7, {'train/loss': 0.125})
  writer.write_images(7, {'val/overlay/a': picture, 'grey': grey})
  writer.write_histograms(7, {'logits': values}, num_buckets={'logits': 10})
  writer.write_texts(7, {'note': 'hello'})
  tone = np.sin(np.arange(80) / 3)[None, :, None] * [[[0.5]], [[-0.25]]]
  writer.write_audios(7, {'tone': tone}, sample_rate=8000)
  writer.write_summaries(7, {'raw': np.arange(6, dtype=np.int32).reshape(2, 3)},
                         metadata={'raw': text_metadata.create_summary_metadata(
                             display_name='', description='').SerializeToString()})
  writer.close()

  reader = tensorboard_events.read(tmp_path)
  loss = reader.Scalars('train/loss')
  assert [(e.step, e.value) for e in loss] == [(3, 0.25), (7, 0.125)]
  assert [(e.step, e.value) for e in reader.Scalars('val/mIoU')] == [(3, 41.5)]

  (image,) = reader.Images('val/overlay/a')
  assert (image.step, image.width, image.height) == (7, 7, 5)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))),
                                picture)
  (grid,) = reader.Images('grey')  # Two images under one key: one grid, float [0, 1] scaled.
  assert grid.step == 7

  (histogram,) = reader.Histograms('logits')
  assert histogram.histogram_value.num == 1000
  np.testing.assert_allclose(histogram.histogram_value.sum, values.sum())

  (raw,) = reader.Tensors('raw')
  np.testing.assert_array_equal(tensor_util.make_ndarray(raw.tensor_proto),
                                np.arange(6).reshape(2, 3))
  assert reader.SummaryMetadata('raw').plugin_data.plugin_name == 'text'
  (note,) = reader.Tensors('note')
  assert tensor_util.make_ndarray(note.tensor_proto).item() == b'hello'
  for i in range(2):
    (clip,) = reader.Audio(f'tone/{i}')
    assert (clip.sample_rate, clip.length_frames, clip.content_type) == (8000, 80, 'audio/wav')
    with wave.open(io.BytesIO(clip.encoded_audio_string)) as wav:
      pcm = np.frombuffer(wav.readframes(80), '<i2')
    np.testing.assert_allclose(pcm / 32767, tone[i, :, 0], atol=1e-4)

  assert tensorboard_events.hparams(reader) == {'optimizer.lr': 0.01, 'model.name': 'segformer',
                                'train.ema': False, 'train.num_steps': 100.0,
                                'eval.scales': '(0.5, 1.0)'}


def test_clu_writers_and_periodic_actions_work_where_tensorflow_cannot_be_imported(tmp_path):
  """`sys.modules['tensorflow'] = None` makes `import tensorflow` fail, as on an install without
  it; importing semseg_jax first lets clu's default writer write event files all the same."""
  script = f"""
import sys
import wave
sys.modules['tensorflow'] = None
import semseg_jax
from clu import metric_writers, periodic_actions
writer = metric_writers.create_default_writer({str(tmp_path)!r})
periodic_actions.ReportProgress(num_train_steps=10, writer=writer)
writer.write_scalars(1, {{'x': 2.0}})
writer.close()
"""
  subprocess.run([sys.executable, '-c', script], check=True, cwd=run_main.REPO,
                 env=run_main.env(1), timeout=120)
  assert [(e.step, e.value) for e in tensorboard_events.read(tmp_path).Scalars('x')] == [(1, 2.0)]


def test_the_writer_leaves_torch_unimported_and_importable():
  """tensorboardX imports PyTorch where it is installed (seconds of every command's start);
  the writer's import keeps it out, and torch still imports afterwards."""
  pytest.importorskip('torch')
  script = """
import sys
from semseg_jax import tensorboard_writer
assert 'torch' not in sys.modules, 'importing the writer imported torch'
import torch
print(torch.zeros(2).sum().item())
"""
  result = subprocess.run([sys.executable, '-c', script], cwd=run_main.REPO, env=run_main.env(1),
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == '0.0'
