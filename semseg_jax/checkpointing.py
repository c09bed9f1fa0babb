"""Orbax checkpoints of the train state together with the data-iterator state.

Checkpoints live in <workdir>/checkpoints. Orbax writes each one to a temporary directory and
renames it when complete, so a run killed mid-write never leaves a partial checkpoint that
would be restored; the previous ones stay intact, and the next training run removes the
temporary directory. A checkpoint damaged afterwards (a truncated file, an emptied directory)
is named in a warning, the newest one that reads is used, and the training run moves the
damaged one to checkpoints/unreadable/. A full device stops training with one StorageFull
error naming the directory, before a checkpoint that does not fit starts (the previous ones
stay intact and resumable).
"""

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from typing import Any

import grain
import jax
from absl import logging
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint._src.metadata import array_metadata_store

# Errors of a device that is full or over quota, as errno values and as the words of the
# messages TensorStore and Python give for them.
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_WORDS = ('No space left on device', 'Disk quota exceeded')
_SAVE_MARGIN_BYTES = 1 << 20  # Metadata and the data iterator's state, beyond the arrays.

# orbax writes an array held whole by several devices (data parallelism replicates every
# parameter) in slices, one per device, in parallel; each slice is a small program that
# compiles once per array shape at the first save (about 8 s for the tiny SegFormer's ~170
# arrays over 8 CPU devices). An array whose slices would be under 1 MiB is written whole by
# its first device instead: such a write costs less than compiling the slices.
MIN_SLICE_BYTES = 1 << 20
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(
        array_metadata_store=array_metadata_store.Store(),
        min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES), override=True)


class StorageFull(OSError):
  """The device of the workdir is full (or over quota): what was being written is named, and
  the newest checkpoint, which is intact."""


def is_storage_full(e: BaseException | None) -> bool:
  """Whether `e`, or an exception it was raised from, is a full device or exhausted quota."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
      return True
    if any(words in str(e) for words in _FULL_WORDS):
      return True
    e = e.__cause__ or e.__context__
  return False


def storage_full(path: str, what: str, checkpoints: str | None = None) -> StorageFull:
  """The StorageFull error for `what` (being written to `path`), naming the newest intact
  checkpoint in the `checkpoints` directory."""
  message = f'No space left on the device of {path}: {what}.'
  if checkpoints is not None:
    steps = [int(d) for d in _list(checkpoints) if d.isdigit()]
    message += (f' The checkpoint of step {max(steps)} in {checkpoints} is intact: free space '
                'and rerun the same command to resume from it.' if steps else
                f' No checkpoint is in {checkpoints} yet.')
  return StorageFull(errno.ENOSPC, message)


@contextlib.contextmanager
def storage_full_named(path: str, what: str, checkpoints: str | None = None) -> Iterator[None]:
  """Turns a failure of the block for lack of room (`is_storage_full`) into `storage_full(path,
  what, checkpoints)`, without the libraries' own errors; other failures pass unchanged."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    if is_storage_full(e):
      raise storage_full(path, what, checkpoints) from None
    raise


def _list(directory: str) -> list[str]:
  try:
    return os.listdir(directory)
  except OSError:
    return []


def make_manager(workdir: str, config: ml_collections.ConfigDict,
                 owner: bool = False) -> ocp.CheckpointManager:
  """The workdir's checkpoint manager. The `owner` (the training run, which holds the workdir's
  lock) removes the temporary directories of writes that a kill cut off; anyone else (eval or
  predict beside a live run) must not touch them."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.checkpoint.max_to_keep,
      create=True,
      cleanup_tmp_directories=owner)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any) -> None:
  """Saves the state after `step` steps, asynchronously (training goes on while it writes).
  StorageFull, naming the directory, when the device (a local one) has less room than the
  state's arrays take, or when a write fails for lack of room."""
  directory = str(manager.directory)
  wait(manager)  # The previous write (orbax's save would wait for it too) has taken its room.
  if '://' not in directory:  # Buckets have no device to fill.
    needed = sum(getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(state))
    needed += _SAVE_MARGIN_BYTES
    free = shutil.disk_usage(directory).free
    if jax.process_count() > 1:  # Process 0's view decides, so that all stop together. In
      # KiB: jax's default int32 holds bytes only up to 2 GiB.
      free = 1024 * int(multihost_utils.broadcast_one_to_all(np.int32(min(free // 1024,
                                                                           2**31 - 1))))
    if free < needed:
      raise storage_full(directory, f'{free / 2**20:.1f} MiB free, about '
                         f'{needed / 2**20:.1f} MiB needed for the checkpoint of step {step}',
                         directory)
  with storage_full_named(directory, f'writing the checkpoint of step {step} failed', directory):
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)


def wait(manager: ocp.CheckpointManager) -> None:
  """Waits for the checkpoint being written; a write that failed for lack of room is a
  StorageFull naming the directory (not TensorStore's per-array errors)."""
  directory = str(manager.directory)
  with storage_full_named(directory, 'writing a checkpoint failed', directory):
    manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
            data_iterator: Any = None) -> Any:
  """Restores the state at `step` onto the shardings of `abstract_state` (and the iterator
  in place, when given)."""
  items = {'state': ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))['state']


def _problem(e: Exception) -> str:
  return f'{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ""}'


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   data_iterator: Any = None, owner: bool = False) -> tuple[Any, int] | None:
  """(state, step) of the newest checkpoint that reads, or None when there is none. Newer ones
  that do not read are named in a warning; the `owner` (the training run) moves them to
  checkpoints/unreadable/, so that it can save those steps again. When none reads, nothing is
  moved and the error names each (a model that no longer fits its checkpoints fails here)."""
  steps, problems = sorted(manager.all_steps(), reverse=True), []
  for step in steps:
    try:
      state = restore(manager, step, abstract_state, data_iterator)
    except Exception as e:  # pylint: disable=broad-except
      problems.append((step, _problem(e)))
      continue
    if problems and owner:
      _move_unreadable(manager, [s for s, _ in problems])
    for bad, problem in problems:
      logging.warning('Checkpoint %s cannot be read (%s)%s. Using step %d.',
                      manager.directory / str(bad), problem,
                      f'; moved to {manager.directory / "unreadable"}' if owner else '', step)
    return state, step
  if problems:
    raise ValueError(f'No checkpoint in {manager.directory} can be read: ' + '; '.join(
        f'step {s}: {p}' for s, p in problems))
  return None


def _move_unreadable(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  if jax.process_index() == 0:  # epath: the workdir may be on a bucket.
    target = manager.directory / 'unreadable'
    target.mkdir(parents=True, exist_ok=True)
    for step in steps:
      destination = target / str(step)
      if destination.exists():  # An older copy of the same step.
        destination.rmtree()
      (manager.directory / str(step)).rename(destination)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('semseg_jax unreadable checkpoints moved')
  manager.reload()


def find_checkpoint(path: str) -> str:
  """The step directory (holding state/) of a semseg_jax orbax checkpoint at `path`: a
  workdir, its checkpoints/ directory (the latest step) or one checkpoints/<step>."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, 'state')):
    return path
  base = os.path.join(path, 'checkpoints') if os.path.isdir(os.path.join(path, 'checkpoints')) \
      else path
  steps = sorted(int(n) for n in (os.listdir(base) if os.path.isdir(base) else [])
                 if n.isdigit() and os.path.isdir(os.path.join(base, n, 'state')))
  if not steps:
    raise FileNotFoundError(f'{path} holds no semseg_jax checkpoint: expected a workdir, its '
                            'checkpoints/ directory, or a checkpoints/<step> directory with '
                            'state/ inside.')
  return os.path.join(base, str(steps[-1]))


def read_variables(step_dir: str) -> dict:
  """{'params', 'batch_stats'} of the checkpoint in `step_dir` (see find_checkpoint) as NumPy
  arrays of the stored shapes; the optimizer state is not read."""
  checkpointer = ocp.PyTreeCheckpointer()
  state_dir = os.path.join(step_dir, 'state')
  try:
    stored = checkpointer.metadata(state_dir).item_metadata.tree
    # Host (NumPy) targets of the stored shapes: nothing is placed on devices here.
    host = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        {k: stored[k] for k in ('params', 'batch_stats') if k in stored})
    return checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=host, restore_args=ocp.checkpoint_utils.construct_restore_args(host),
        partial_restore=True))
  except (KeyError, ValueError, FileNotFoundError, TypeError) as e:
    raise ValueError(f'{step_dir}: cannot read model variables from it: {e}') from e


def save_variables(directory: str, variables: dict) -> str:
  """Writes {'params', 'batch_stats'} as a weights-only checkpoint that find_checkpoint and
  read_variables accept (directory/checkpoints/0/state); returns the step directory."""
  step_dir = os.path.join(os.path.abspath(directory), 'checkpoints', '0')
  checkpointer = ocp.PyTreeCheckpointer()
  checkpointer.save(os.path.join(step_dir, 'state'), variables)
  return step_dir
