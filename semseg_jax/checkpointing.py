"""Orbax checkpoints of the train state together with the data-iterator state.

Checkpoints live in <workdir>/checkpoints. Orbax writes each one to a temporary directory and
renames it when complete, so a run killed mid-write never leaves a partial checkpoint that
would be restored; the previous ones stay intact.
"""

import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.checkpoint.max_to_keep,
      create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any) -> None:
  """Saves the state after `step` steps, asynchronously (training goes on while it writes)."""
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
            data_iterator: Any = None) -> Any:
  """Restores the state at `step` onto the shardings of `abstract_state` (and the iterator
  in place, when given)."""
  items = {'state': ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))['state']


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
