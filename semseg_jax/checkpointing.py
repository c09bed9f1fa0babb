"""Orbax checkpoints of the train state together with the data-iterator state.

Checkpoints live in <workdir>/checkpoints. Orbax writes each one to a temporary directory and
renames it when complete, so a run killed mid-write never leaves a partial checkpoint that
would be restored; the previous ones stay intact.
"""

import os
from typing import Any

import grain
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
