"""Preemption: when to save and stop at a step boundary."""

import signal

import jax
from absl import logging
from jax.experimental import multihost_utils


class Preemption:
  """Whether to save and stop at this step boundary: after a SIGTERM to this process (one
  process), or at JAX's preemption sync point, which every process of a multi-process run
  reaches at the same step once any of them was told of a preemption."""

  def __init__(self):
    self._signalled = False
    self._multi_process = jax.process_count() > 1
    self._previous = None
    if not self._multi_process:  # Multi-process: JAX's coordination service watches SIGTERM.
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the next step boundary, then stopping.')
    self._signalled = True

  def requested(self, step: int) -> bool:
    if self._multi_process:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
