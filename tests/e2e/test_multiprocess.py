"""Two processes on localhost (jax.distributed, CPU collectives over gloo, 2 devices each) run
the real entry point and train what this one process trains on its one device (to float
tolerance: the gradients are reduced over the devices in another order)."""

import os
import re
import socket

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from semseg_jax import main
from tests.helpers import e2e_config
from tests.helpers import run_main


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _final_state_on_host(workdir) -> tuple[int, dict]:
  """(step, state) of the latest checkpoint as NumPy arrays, whatever devices saved it."""
  steps = sorted(int(s) for s in os.listdir(workdir / 'checkpoints') if s.isdigit())
  path = workdir / 'checkpoints' / str(steps[-1]) / 'state'
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return steps[-1], checkpointer.restore(path, args=ocp.args.PyTreeRestore(
      restore_args=restore_args))


def _start(command, env, log):
  """(a run started by test_train's run_main.start_logged, its log file)."""
  return run_main.start_logged(command, env, log), log


def _finish(proc, log, timeout):
  """Waits for a run from _start; returns ('', its stderr) like communicate() would."""
  proc.wait(timeout=timeout)
  return '', log.read_text()


def _losses(stderr: str) -> list[float]:
  return [float(v) for v in re.findall(r'train/loss=([-+0-9.e]+)', stderr)]


@pytest.mark.slow(125)
def test_two_processes_train_like_one(tmp_path, caplog):
  overrides = {**e2e_config.TINY, 'train.num_steps': 4, 'train.eval_every': 4,
               'train.log_every': 1, 'checkpoint.every_steps': 4}
  flags = e2e_config.override_flags(overrides)
  port = _free_port()
  two = tmp_path / 'two'
  procs = []
  for process_id in (0, 1):
    env = run_main.env(2)
    env['JAX_CPU_COLLECTIVES_IMPLEMENTATION'] = 'gloo'
    command = run_main.main_command(two, *flags, f'--coordinator_address=localhost:{port}',
                            '--num_processes=2', f'--process_id={process_id}')
    procs.append(_start(command, env, tmp_path / f'process_{process_id}.log'))
  one = tmp_path / 'one'  # The reference, in this process while the two run.
  caplog.set_level(logging.INFO)
  with jax.default_prng_impl('threefry2x32'):  # The generator of the two (run_main.env).
    main.run('train', e2e_config.apply(e2e_config.tiny_quickstart(), overrides), str(one))
  single_stderr = caplog.text
  outputs = [_finish(proc, log, timeout=600) for proc, log in procs]
  for (p, _), (_, stderr) in zip(procs, outputs):
    assert p.returncode == 0, stderr[-4000:]
  assert 'on 4 devices (2 processes)' in outputs[0][1]
  assert 'on 1 devices (1 processes)' in single_stderr

  losses_two, losses_one = _losses(outputs[0][1]), _losses(single_stderr)
  assert len(losses_one) == 4 and len(losses_two) == 4
  np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5)
  assert not _losses(outputs[1][1])  # Only process 0 logs.
  step_two, state_two = _final_state_on_host(two)
  step_one, state_one = _final_state_on_host(one)
  assert step_two == step_one == 4
  leaves_two, leaves_one = (e2e_config.flat_leaves(s) for s in (state_two, state_one))
  for key in leaves_one:
    np.testing.assert_allclose(leaves_two[key], leaves_one[key], rtol=1e-4, atol=5e-5,
                               err_msg=key)
  # The two hosts evaluated every image once between them: the same pixels counted, and
  # (parameters equal to float tolerance) nearly the same predictions.
  confusion_two = np.load(two / 'confusion_val_step_0000004.npy')
  confusion_one = np.load(one / 'confusion_val_step_0000004.npy')
  np.testing.assert_array_equal(confusion_two.sum(axis=1), confusion_one.sum(axis=1))
  assert np.abs(confusion_two - confusion_one).sum() <= 1e-3 * confusion_one.sum()
  record_two, record_one = run_main.records(two)[-1], run_main.records(one)[-1]
  np.testing.assert_allclose(record_two['mIoU'], record_one['mIoU'], rtol=1e-3)
