"""Checkpoints: a save cut off mid-write is never restored; the data stream resumes with them."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import default
from semseg_jax import checkpointing
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from semseg_jax.evaluators import common


def _state(value: float) -> dict:
  return {'params': {'w': np.full((4, 3), value, np.float32)}, 'step': np.int32(value)}


def make_iterator():
  config = default.get_config()
  config.data.synthetic_image_size, config.data.synthetic_train_size = (16, 16), 6
  config.augment.resize_scale, config.augment.crop_size = (), (16, 16)
  config.train.batch_size = 2
  return pipeline.train_dataset(config, datasets.make_source(config.data, 'train'))


def test_a_save_cut_off_mid_write_is_never_restored(tmp_path):
  config = default.get_config()
  manager = checkpointing.make_manager(str(tmp_path), config)
  data = make_iterator()
  for step in (5, 10):
    next(data)
    checkpointing.save(manager, step, _state(step), data)
  manager.wait_until_finished()
  expected_next = next(data)  # What a run resumed from step 10 must read first.
  # A process killed while writing step 15: orbax writes into a temporary directory and only
  # renames it to 15/ once complete, so the kill leaves this behind.
  checkpoints = tmp_path / 'checkpoints'
  partial = checkpoints / '15.orbax-checkpoint-tmp-1763700000000000'
  shutil.copytree(checkpoints / '10', partial)
  for path in sorted(partial.rglob('*'))[::2]:
    if path.is_file():
      path.write_bytes(path.read_bytes()[:7])  # Torn files.
  manager = checkpointing.make_manager(str(tmp_path), config)
  assert manager.latest_step() == 10 and sorted(manager.all_steps()) == [5, 10]
  resumed = make_iterator()
  restored = checkpointing.restore(manager, 10, jax.tree.map(np.zeros_like, _state(0)), resumed)
  np.testing.assert_array_equal(restored['params']['w'], _state(10)['params']['w'])
  batch = next(resumed)
  for key in ('image', 'label'):
    np.testing.assert_array_equal(batch[key], expected_next[key])
  # The resumed run saves step 15 for real; the torn temporary is not taken for it.
  checkpointing.save(manager, 15, _state(15), resumed)
  manager.wait_until_finished()
  manager = checkpointing.make_manager(str(tmp_path), config)
  assert manager.latest_step() == 15
  restored = checkpointing.restore(manager, 15, jax.tree.map(np.zeros_like, _state(0)))
  assert int(restored['step']) == 15
  assert os.path.isdir(checkpoints / '15' / 'state')


def test_a_process_killed_during_a_save_restores_the_previous_checkpoint(tmp_path):
  """A real SIGKILL while checkpoint 2 (256 MB) is being written: checkpoint 1 is restored."""
  result = subprocess.run([sys.executable, '-m', 'tests.helpers.killed_save', str(tmp_path)],
                          cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr[-3000:]
  left = os.listdir(tmp_path / 'checkpoints')
  assert '1' in left and '2' not in left, left
  manager = checkpointing.make_manager(str(tmp_path), default.get_config())
  assert manager.latest_step() == 1
  target = {'params': {'w': np.zeros((64, 1024, 1024), np.float32)},
            'step': np.zeros((), np.int32)}
  restored = checkpointing.restore(manager, 1, target, make_iterator())
  assert int(restored['step']) == 1 and float(restored['params']['w'].min()) == 1.0


def test_a_write_that_fails_for_lack_of_room_is_one_error_naming_the_intact_step(tmp_path,
                                                                                  monkeypatch):
  """What the disk-full test (tests/e2e/test_main.py) cannot time: room that runs out during a
  write. TensorStore's error (a ValueError whose text names the full device) from the save or
  from waiting for it becomes one StorageFull naming the directory and the intact step; a
  metrics.jsonl line that cannot be written (here: /dev/full) names the file."""
  config = default.get_config()
  manager = checkpointing.make_manager(str(tmp_path), config)
  data = make_iterator()
  checkpointing.save(manager, 5, _state(5), data)
  checkpointing.wait(manager)
  tensorstore_error = ValueError('RESOURCE_EXHAUSTED: Error writing local file "x/_sharding": '
                                 'Failed to write 94978 bytes to file 6: No space left on device '
                                 "[os_error_code='28']")
  def fail(*args, **kwargs):
    raise RuntimeError('a commit failed') from tensorstore_error
  checkpoints = tmp_path / 'checkpoints'
  for method, call in (('save', lambda: checkpointing.save(manager, 10, _state(10), data)),
                       ('wait_until_finished', lambda: checkpointing.wait(manager))):
    with monkeypatch.context() as patch:
      patch.setattr(manager, method, fail)
      with pytest.raises(checkpointing.StorageFull,
                         match=f'No space left on the device of {checkpoints}: .* The checkpoint '
                               f'of step 5 in {checkpoints} is intact'):
        call()
  other = ValueError('RESOURCE_EXHAUSTED: out of memory')  # Not a full device: raised as is.
  monkeypatch.setattr(manager, 'wait_until_finished', lambda: (_ for _ in ()).throw(other))
  with pytest.raises(ValueError, match='out of memory'):
    checkpointing.wait(manager)

  workdir = tmp_path / 'full'
  workdir.mkdir()
  os.symlink('/dev/full', workdir / 'metrics.jsonl')
  with pytest.raises(checkpointing.StorageFull,
                     match=f'device of {workdir / "metrics.jsonl"}: the segmentation record of '
                           'step 3 could not be appended'):
    common.append_record(str(workdir), {'step': 3, 'evaluator': 'segmentation'})
