"""Running `python -m semseg_jax.main` as a user does, in a subprocess, and reading what it
leaves in its workdir."""

import json
import os
import pathlib
import subprocess
import sys

import orbax.checkpoint as ocp

REPO = pathlib.Path(__file__).resolve().parents[2]


def env(num_devices: int = 1) -> dict:
  """This process's environment (the suite's XLA flags and generator included) with
  `num_devices` CPU devices and the repository on the path."""
  env = dict(os.environ)
  device_flag = '--xla_force_host_platform_device_count'
  env['XLA_FLAGS'] = ' '.join([f for f in env.get('XLA_FLAGS', '').split()
                               if not f.startswith(device_flag)]
                              + [f'{device_flag}={num_devices}'])
  if num_devices > 1:
    # The suite's default generator (philox, tests/conftest.py) does not compile for several
    # devices in jax 0.10 ('mulhi' fails to convert to StableHLO); tests comparing such a run
    # with a 1-device one run that one under jax.default_prng_impl('threefry2x32') too.
    env['JAX_DEFAULT_PRNG_IMPL'] = 'threefry2x32'
  env['PYTHONPATH'] = str(REPO)
  env.pop('JAX_PLATFORMS', None)
  return env


def main_command(workdir, *flags, config='configs/quickstart.py'):
  return [sys.executable, '-m', 'semseg_jax.main', f'--config={config}', f'--workdir={workdir}',
          *flags]


def run(workdir, *flags, config='configs/quickstart.py', check=True, timeout=600,
        num_devices=1):
  result = subprocess.run(main_command(workdir, *flags, config=config), cwd=REPO,
                          env=env(num_devices),
                          capture_output=True, text=True, timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f'main failed ({result.returncode}):\n{result.stderr[-5000:]}')
  return result


def records(workdir):
  """The lines of <workdir>/metrics.jsonl; a line a kill cut short is skipped (as the
  evaluators' own reader skips it)."""
  parsed = []
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      try:
        parsed.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return parsed


def final_params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))['state']
  return manager.latest_step(), restored


def start_logged(command, env, log) -> subprocess.Popen:
  """Starts `command` with its stderr in the file `log`: a pipe left unread while the test waits
  fills up (64 KiB) and stalls the run that writes to it, and any peer waiting on that run."""
  with open(log, 'w') as f:
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=f)
