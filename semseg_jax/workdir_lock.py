"""One training run per workdir: an advisory lock on <workdir>/.semseg_jax.lock, held by process
0 for the whole run. The operating system drops it when the process ends, however it ends
(SIGKILL included), so a killed run never leaves it stuck. Workdirs on a bucket (gs://...) have
no such lock and are not checked."""

import contextlib
import fcntl
import os
from typing import Iterator

import jax

LOCK_NAME = '.semseg_jax.lock'


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock while the block runs; fails at once, naming the workdir and the
  holder's process id, when another run holds it."""
  if jax.process_index() != 0 or '://' in workdir:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'unknown'
      raise RuntimeError(
          f'Another run is training in {workdir} (process {holder} holds {path}); two runs '
          'would write the same checkpoints and metrics.jsonl. Wait for it or stop it, or use '
          'another --workdir.') from None
    f.seek(0)
    f.truncate()
    f.write(f'{os.getpid()}\n')
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
