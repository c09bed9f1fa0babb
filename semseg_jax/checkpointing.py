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
import numpy as np
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


def load_variables(path: str, abstract_variables: dict) -> dict:
  """{'params', 'batch_stats'} of the checkpoint at `path` (see find_checkpoint), as NumPy
  arrays; every array of `abstract_variables` must be there with its shape, and the
  checkpoint's optimizer state is not read."""
  step_dir = find_checkpoint(path)
  # Host (NumPy) targets: orbax then returns the stored shapes, and misfits are listed below.
  host = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_variables)
  restore_args = ocp.checkpoint_utils.construct_restore_args(host)
  try:
    restored = ocp.PyTreeCheckpointer().restore(
        os.path.join(step_dir, 'state'), args=ocp.args.PyTreeRestore(
            item=host, restore_args=restore_args, partial_restore=True))
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise ValueError(f'{step_dir}: cannot read this model\'s variables from it: {e}') from e
  expected = {jax.tree_util.keystr(p): x.shape
              for p, x in jax.tree_util.tree_leaves_with_path(abstract_variables)}
  got = {jax.tree_util.keystr(p): np.shape(x)
         for p, x in jax.tree_util.tree_leaves_with_path(restored)}
  wrong = [f'{k}: checkpoint {got.get(k, "missing")}, model {v}' for k, v in expected.items()
           if got.get(k) != v]
  if wrong:
    raise ValueError(f'{step_dir} does not fit this model ({len(wrong)} arrays differ): '
                     + '; '.join(wrong[:10]))
  return restored
