"""Saves checkpoint 1, then kills itself (SIGKILL) while checkpoint 2 is being written: what a
preempted or crashed host leaves behind (test_checkpointing restores from it).

python -m tests.helpers.killed_save WORKDIR
"""

import os
import signal
import sys
import threading
import time

from absl import flags

flags.FLAGS.mark_as_parsed()

import numpy as np  # pylint: disable=g-import-not-at-top

from configs import default  # pylint: disable=g-import-not-at-top
from semseg_jax import checkpointing  # pylint: disable=g-import-not-at-top
from tests import test_checkpointing  # pylint: disable=g-import-not-at-top


def _kill_when_writing(checkpoints: str, step: int) -> None:
  """SIGKILL this process as soon as step's temporary directory exists (before it is final)."""
  prefix = f'{step}.orbax-checkpoint-tmp'
  while True:
    if any(name.startswith(prefix) for name in os.listdir(checkpoints)):
      os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.0005)


def main(workdir: str) -> None:
  manager = checkpointing.make_manager(workdir, default.get_config())
  data = test_checkpointing.make_iterator()
  big = {'params': {'w': np.full((64, 1024, 1024), 1.0, np.float32)}, 'step': np.int32(1)}
  checkpointing.save(manager, 1, big, data)
  manager.wait_until_finished()
  threading.Thread(target=_kill_when_writing, args=(os.path.join(workdir, 'checkpoints'), 2),
                   daemon=True).start()
  big = {'params': {'w': np.full((64, 1024, 1024), 2.0, np.float32)}, 'step': np.int32(2)}
  checkpointing.save(manager, 2, big, data)
  manager.wait_until_finished()
  print('the save finished before the kill', flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
